"""`arcoseg segment`: run a model on images; write label maps with the input geometry."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any, Callable

from arcoseg.commands.common import add_device_arguments, existing_path
from arcoseg.errors import Cancelled, InputError, OutputError
from arcoseg.fileutil import ensure_parent_writable, full_suffix
from arcoseg.io.images import SUPPORTED_OUTPUT_SUFFIXES, is_image_path, list_images
from arcoseg.io.segnrrd import SUFFIX as SEG_NRRD
from arcoseg.io.segnrrd import is_seg_nrrd
from arcoseg.progress import Reporter

_CHANNEL_SUFFIX = re.compile(r"_(\d{4})$")
OUTPUT_SUFFIXES = (*SUPPORTED_OUTPUT_SUFFIXES, SEG_NRRD)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `segment`."""
    p = sub.add_parser("segment", help="segment images with a trained model",
                       description="Segment one or more images (files, folders of images, or "
                                   "DICOM series folders). OUT is a file for one image, a folder "
                                   "for several; the format follows the extension "
                                   "(.nii.gz, .nii, .nrrd, .mha: a label map of class values; "
                                   ".seg.nrrd: a Slicer segmentation, one segment per class "
                                   "named and coloured after the model).")
    p.add_argument("model", help="model: a registry name (name or name@version, see "
                                 "`arcoseg models list`) or a model folder")
    p.add_argument("images", type=existing_path, nargs="+", help="image files or folders")
    p.add_argument("-o", "--out", type=Path, required=True, help="output file or folder")
    p.add_argument("--ext", default=".nii.gz", choices=OUTPUT_SUFFIXES,
                   help="file format when OUT is a folder (default .nii.gz)")
    p.add_argument("--probabilities", action="store_true",
                   help="also write per-class probabilities (<name>_probabilities)")
    p.add_argument("--entropy", action="store_true",
                   help="also write the normalised predictive entropy (<name>_entropy)")
    p.add_argument("--batch", type=int, default=8, help="slices / windows per forward pass")
    add_device_arguments(p)
    return p


def collect_cases(inputs: list[Path], channels: int) -> list[tuple[str, list[Path]]]:
    """(case id, channel files) for every input; multi-channel cases use nnU-Net `_000N` names."""
    files: list[Path] = []
    for path in inputs:
        if not path.exists():
            raise InputError(f"Input {path} does not exist. Check the path.")
        found = list_images(path) if path.is_dir() else [path]
        files.extend(found or [path])  # a folder without image files: a DICOM series
    cases: dict[str, list[Path]] = {}
    for f in files:
        stem = f.name[: -len(full_suffix(f))] if is_image_path(f) else f.name
        case_id = _CHANNEL_SUFFIX.sub("", stem)
        cases.setdefault(case_id, []).append(f)
    for case_id, paths in cases.items():
        if len(paths) != channels:
            raise InputError(f"Case {case_id} has {len(paths)} image(s) but the model needs "
                             f"{channels} channel(s) (name them {case_id}_0000, _0001, …).")
    return [(k, sorted(v)) for k, v in cases.items()]


def output_paths(out: Path, case_ids: list[str], ext: str) -> dict[str, Path]:
    """One image to a file named OUT; several (or OUT without an image suffix) into folder OUT."""
    if len(case_ids) == 1 and (is_image_path(out) or is_seg_nrrd(out)):
        if full_suffix(out) not in OUTPUT_SUFFIXES:
            raise OutputError(f"Cannot write {out}: use one of {', '.join(OUTPUT_SUFFIXES)}.")
        return {case_ids[0]: out}
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, but {len(case_ids)} images need an output folder.")
    return {c: out / f"{c}{ext}" for c in case_ids}


def _sibling(path: Path, tag: str) -> Path:
    """Extra maps beside the label map; beside a .seg.nrrd they are plain .nrrd volumes."""
    suffix = full_suffix(path)
    return path.with_name(f"{path.name[: -len(suffix)]}_{tag}"
                          f"{'.nrrd' if suffix == SEG_NRRD else suffix}")


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Segment every case; return the written files and timings."""
    from arcoseg.device import describe_device, resolve_device  # torch, MONAI: only when run
    from arcoseg.inference import segment_file
    from arcoseg.registry import Registry
    from arcoseg.serve_cache import load_model  # kept loaded inside `arcoseg serve`

    device = resolve_device(args.device)
    model, metadata = load_model(Registry().resolve(args.model), device=device)
    cases = collect_cases(args.images, metadata.network["in_channels"])
    outputs = output_paths(args.out, [c for c, _ in cases], args.ext)
    for path in outputs.values():
        ensure_parent_writable(path)
    reporter.log(f"Segmenting {len(cases)} image(s) on {describe_device(device)['name']}")
    written = []
    for i, (case_id, paths) in enumerate(cases):
        if stop():
            raise Cancelled(f"Cancelled after {i} of {len(cases)} images; written: "
                            f"{', '.join(w['labels'] for w in written) or 'none'}.")
        start, out = time.perf_counter(), outputs[case_id]
        segment_file(model, metadata, paths, out, device,
                     probabilities=_sibling(out, "probabilities") if args.probabilities else None,
                     entropy=_sibling(out, "entropy") if args.entropy else None,
                     batch_size=args.batch, amp=args.amp)
        entry = {"case": case_id, "labels": str(out), "seconds": round(time.perf_counter() - start, 3)}
        if args.probabilities:
            entry["probabilities"] = str(_sibling(out, "probabilities"))
        if args.entropy:
            entry["entropy"] = str(_sibling(out, "entropy"))
        written.append(entry)
        reporter.progress(i + 1, len(cases), f"segmented {case_id}")
    return {"outputs": written, "device": str(device),
            "classes": [c["name"] for c in metadata.classes]}
