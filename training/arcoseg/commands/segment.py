"""`arcoseg segment`: run a model on images; write label maps with the input geometry."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from arcoseg.commands.common import HelpFormatter, add_device_arguments, existing_path
from arcoseg.errors import ArcosegError, Cancelled, OutputError
from arcoseg.io.geometry import check_format_holds, check_same_geometry, read_grid
from arcoseg.io.images import check_image, image_output_suffixes
from arcoseg.io.inputs import image_inputs
from arcoseg.io.names import group_channels
from arcoseg.io.outputs import (check_distinct, check_free_space, check_output_file,
                                image_output_paths, names_file, output_path, sibling)
from arcoseg.io.segnrrd import SUFFIX as SEG_NRRD
from arcoseg.io.segnrrd import check_segment_names, is_seg_nrrd
from arcoseg.progress import Reporter
from arcoseg.ranges import WINDOW_BATCH

if TYPE_CHECKING:
    from arcoseg.data.plan import Plan
    from arcoseg.model_metadata import ModelMetadata

# label maps; also a Slicer segmentation, written with the model's names and colours
OUTPUT_SUFFIXES = (*image_output_suffixes(), SEG_NRRD)
DEFAULT_EXT = ".nii.gz"  # --ext


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `segment`."""
    p = sub.add_parser("segment", help="segment images with a trained model",
                       description="Segment one or more images (files, folders of images, or "
                                   "DICOM series folders). OUT is a file for one image, a folder "
                                   "for several; the format follows the extension "
                                   "(.nii.gz, .nii, .nrrd, .mha: a label map of class values; "
                                   ".seg.nrrd: a Slicer segmentation, one segment per class "
                                   "named and coloured after the model). A sheared "
                                   "(non-orthogonal) image direction needs .nrrd, .mha or "
                                   ".seg.nrrd.", formatter_class=HelpFormatter)
    p.add_argument("model", help="model: a registry name (name or name@version, see "
                                 "`arcoseg models list`) or a model folder")
    p.add_argument("images", type=existing_path, nargs="+", help="image files or folders")
    p.add_argument("-o", "--out", type=output_path, required=True, help="output file or folder")
    p.add_argument("--ext", choices=OUTPUT_SUFFIXES,  # None: not given, refused with a file -o
                   help=f"file format when OUT is a folder (default: {DEFAULT_EXT})")
    p.add_argument("--probabilities", action="store_true",
                   help="also write per-class probabilities (<name>_probabilities)")
    p.add_argument("--entropy", action="store_true",
                   help="also write the normalised predictive entropy (<name>_entropy)")
    p.add_argument("--batch", type=WINDOW_BATCH, default=8,
                   help="slices / windows per forward pass (fewer: less memory)")
    add_device_arguments(p)
    return p


def collect_cases(inputs: list[Path], channels: int) -> list[tuple[str, list[Path]]]:
    """(case id, channel files) for every input (`io.names.group_channels`): files, folders of
    image files, or DICOM series folders (the folder name is the case id). Every image is
    checked from its header first (`io.images.check_image`): one bad file late in a folder
    ends the run before any result is written, and so do the channel files of a case that are
    not on one voxel grid."""
    files = [file for path in inputs for file in image_inputs(path)]
    cases = group_channels(files, channels)
    for file in files:
        check_image(file)
    for _, paths in cases:
        first = read_grid(paths[0])
        for other in paths[1:]:
            grid = read_grid(other)
            if first is not None and grid is not None:  # a DICOM folder: checked when read
                check_same_geometry(first, grid, str(paths[0]), str(other))
    return cases


def plan_outputs(args: argparse.Namespace, cases: list[tuple[str, list[Path]]],
                 num_classes: int) -> dict[str, dict[str, Path]]:
    """{case id: {"labels": file, "probabilities": …, "entropy": …}}, every path checked before
    any work: format and name (io.outputs), a folder that can be written, no two results on one
    file, a format that holds each input's grid, and the free space for the uncompressed maps."""
    labels = image_output_paths(args.out, [cid for cid, _ in cases], folder_format(args),
                                OUTPUT_SUFFIXES)
    bytes_per_voxel = {"labels": 1, "probabilities": 4 * num_classes, "entropy": 4}
    outputs, sizes = {}, {}
    for cid, paths in cases:
        outputs[cid] = {"labels": labels[cid]}
        for tag in ("probabilities", "entropy"):
            if getattr(args, tag):
                outputs[cid][tag] = sibling(labels[cid], tag)
        grid = read_grid(paths[0])
        for kind, path in outputs[cid].items():
            check_output_file(path)
            if grid is not None:
                check_format_holds(grid, path, str(paths[0]),
                                   components=num_classes if kind == "probabilities" else 1)
                sizes[path] = math.prod(grid.size) * bytes_per_voxel[kind]
    check_distinct((p for case in outputs.values() for p in case.values()),
                   (p for _, paths in cases for p in paths))
    check_free_space(sizes)
    return outputs


def check_for_model(cases: list[tuple[str, list[Path]]], outputs: dict[str, dict[str, Path]],
                    plan: Plan, metadata: ModelMetadata) -> None:
    """Before any work: every input's spacing near enough the model's, and its model grid
    within memory (`data.model_grid`, from the headers; DICOM folders when read); the model's
    class names fit in each .seg.nrrd output."""
    from arcoseg.data.model_grid import check_model_grids

    check_model_grids((paths[0] for _, paths in cases), plan, metadata.network["in_channels"],
                      len(metadata.classes))
    for planned in outputs.values():
        if is_seg_nrrd(planned["labels"]):
            check_segment_names([c["name"] for c in metadata.classes if c["value"] != 0],
                                planned["labels"])


def folder_format(args: argparse.Namespace) -> str:
    """--ext (default DEFAULT_EXT); OutputError when it is given with a file -o, whose own
    suffix sets the format (it would be ignored)."""
    if args.ext is None:
        return DEFAULT_EXT
    if names_file(args.out):
        raise OutputError(f"--ext {args.ext} only applies when -o is a folder, but -o "
                          f"{args.out} names a file, whose suffix sets the format. Leave out "
                          "--ext, or give a folder for -o.")
    return args.ext


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Segment every case; return the written files and timings."""
    from arcoseg.device import describe_device, resolve_device  # torch, MONAI: only when run
    from arcoseg.inference import segment_file
    from arcoseg.modelfile import segmentation_plan
    from arcoseg.registry import Registry
    from arcoseg.serve_cache import load_model  # kept loaded inside `arcoseg serve`

    device = resolve_device(args.device)
    folder = Registry().resolve(args.model)
    model, metadata = load_model(folder, device=device)
    plan = segmentation_plan(metadata, folder)
    cases = collect_cases(args.images, plan.image_channels(metadata.network["in_channels"]))
    outputs = plan_outputs(args, cases, len(metadata.classes))
    check_for_model(cases, outputs, plan, metadata)
    reporter.log(f"Segmenting {len(cases)} image(s) on {describe_device(device)['name']}")
    written = []
    for i, (case_id, paths) in enumerate(cases):
        if stop():
            raise Cancelled(f"Cancelled after {i} of {len(cases)} images; written: "
                            f"{_files(written)}.")
        start, out = time.perf_counter(), outputs[case_id]
        title = f"Segmenting {case_id}" + (f" ({i + 1}/{len(cases)})" if len(cases) > 1 else "")
        check = _stop_check(stop, title, written)

        def progress(done: int, total: int) -> None:
            check(f"at {done} of {total}")
            reporter.progress(done, total, title)

        try:
            segment_file(model, metadata, paths, out["labels"], device,
                         probabilities=out.get("probabilities"), entropy=out.get("entropy"),
                         batch_size=args.batch, amp=args.amp, progress=progress,
                         before_writing=lambda: check("before writing"))
        except ArcosegError as err:  # e.g. a NaN voxel, seen only when the image is read
            if written and not isinstance(err, Cancelled):  # Cancelled names them already
                raise type(err)(f"{title}: {err} Nothing written for it; written before: "
                                f"{_files(written)}.") from err
            raise
        written.append({"case": case_id, **{k: str(v) for k, v in out.items()},
                        "seconds": round(time.perf_counter() - start, 3)})
        reporter.log(f"Segmented {case_id} ({i + 1}/{len(cases)}): {out['labels']}")
    return {"outputs": written, "device": str(device),
            "classes": [c["name"] for c in metadata.classes]}


def _stop_check(stop: Callable[[], bool], title: str, written: list[dict[str, Any]]
                ) -> Callable[[str], None]:
    """check(when) ends the run with Cancelled if a stop was asked for (a serve cancel or
    Ctrl-C need not wait for the image to finish): called at every batch of slices or windows
    and once more before the image's files are written."""
    def check(when: str) -> None:
        if stop():
            raise Cancelled(f"{title}: cancelled {when}, nothing written for it; written "
                            f"before: {_files(written)}.")

    return check


def _files(written: list[dict[str, Any]]) -> str:
    """Every file the images segmented so far wrote (label maps and maps), or 'none'."""
    return ", ".join(path for entry in written for key, path in entry.items()
                     if key not in ("case", "seconds")) or "none"
