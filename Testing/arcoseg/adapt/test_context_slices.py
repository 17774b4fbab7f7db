"""Adapt from scratch with 2.5D input (`--context-slices`): the model records its context, and
`segment` feeds it the same channels from one image."""

from __future__ import annotations

import json

import SimpleITK as sitk

from arcoseg.adapt.run import AdaptRequest, adapt
from arcoseg.cli import main
from arcoseg.progress import Reporter
from arcoseg.registry import Registry


def test_adapt_from_scratch_with_context_registers_a_2_5d_model_that_segment_uses(case, tmp_path):
    request = AdaptRequest(images=[case["image"]], annotations=[case["ann"]],
                           classes=["a", "b"], budget=600, iterations=3, device="cpu",
                           context_slices=1, output=tmp_path / "seg.nii.gz")
    adapt(request, Reporter(quiet=True), lambda: False)
    meta = json.loads((Registry().resolve("adapted@v1") / "model.json").read_text())
    assert meta["plan"]["context_slices"] == 1 and meta["network"]["in_channels"] == 3
    out = tmp_path / "again.nii.gz"
    assert main(["segment", "adapted@v1", str(case["image"]), "-o", str(out),
                 "--device", "cpu", "--progress", "none"]) == 0
    written, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(case["image"]))
    assert written.GetSize() == source.GetSize()


def test_context_slices_go_with_a_new_model_only(case, capsys):
    code = main(["adapt", "--image", str(case["image"]), "--annotations", str(case["ann"]),
                 "--model", "x", "--context-slices", "1", "--progress", "json"])
    error = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 2 and "--context-slices goes with --from-scratch only" in error["message"]
