"""Headless batch segmentation: arguments, the cases of a folder, and the per-case loop.

`run_batch` is plain Python; `case_processor` does one case through the Logic in its blocking
mode (load, adapt first when the case has annotations, segment, save), reaching the scene only
through `logic.mrml`; `Scripts/batch_segment.py` wires both to Slicer. Exit codes: 0 every case
done, 1 some case failed (the others are still processed), 2 bad arguments or no input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Sequence

from ARCOSegmentLib.segments import read_model_classes, segment_values

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
ANNOTATION_SUFFIXES = (".seg.nrrd",)
OUTPUT_FORMATS = (".nii.gz", ".seg.nrrd")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

ProcessCase = Callable[[str, Path, "Path | None", Path], str]


class BatchError(Exception):
    """Bad batch input (reported with exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The batch command line."""
    p = argparse.ArgumentParser(
        prog="batch_segment.py",
        description="Segment every volume of a folder with ARCOSegment (optionally adapting the "
                    "model first from a case's annotations).")
    p.add_argument("--input", type=Path, required=True, help="folder of volumes (.nii.gz, .nrrd, …)")
    p.add_argument("--output", type=Path, required=True, help="folder for the segmentations")
    p.add_argument("--model", help="registry model NAME[@VERSION] or a model folder (default: "
                                   "the active version when only one model is registered)")
    p.add_argument("--adapt-from", type=Path, metavar="DIR",
                   help="folder of Slicer segmentations named like the volumes (CASE.seg.nrrd, "
                        "segments named after the model's classes, painted on a few slices); a "
                        "case with annotations adapts the model first")
    p.add_argument("--budget", type=float, default=300.0,
                   help="time budget of each adaptation in seconds (default 300)")
    p.add_argument("--format", choices=OUTPUT_FORMATS, default=".nii.gz",
                   help="output: label map (the model's class values) or Slicer segmentation "
                        "(segments named and coloured after the model's classes; default "
                        ".nii.gz)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is available")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the script's arguments (a leading '--' separating them from Slicer's is dropped)."""
    argv = list(argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    return build_parser().parse_args(argv)


def case_name(path: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> str | None:
    """The case name of a file ('ct_01.nii.gz' → 'ct_01'), or None if it is not an image."""
    name = path.name
    if name.lower().endswith(".seg.nrrd"):
        return None  # a segmentation, not a volume
    return next((name[: -len(s)] for s in suffixes if name.lower().endswith(s)), None)


def list_cases(folder: Path) -> list[tuple[str, Path]]:
    """(case name, path) of every volume in `folder`, sorted; BatchError if there is none or
    two share a case name (ct.nii.gz and ct.nrrd both write CASE.nii.gz)."""
    if not folder.is_dir():
        raise BatchError(f"Input folder {folder} does not exist.")
    cases = sorted((name, p) for p in folder.iterdir()
                   if p.is_file() and (name := case_name(p)) is not None)
    if not cases:
        raise BatchError(f"No volume found in {folder} (looked for {', '.join(IMAGE_SUFFIXES)}).")
    by_name: dict[str, list[str]] = {}
    for name, path in cases:  # lower case: one output file on a case-insensitive disk too
        by_name.setdefault(name.lower(), []).append(path.name)
    clashes = ["; ".join(names) for names in by_name.values() if len(names) > 1]
    if clashes:
        raise BatchError(f"Volumes in {folder} share a case name, so their outputs would "
                         f"overwrite each other: {' | '.join(clashes)}. Rename or move one.")
    return cases


def find_annotation(folder: Path | None, case: str) -> Path | None:
    """The annotation file of `case` in `folder`, if any."""
    if folder is None:
        return None
    return next((folder / f"{case}{s}" for s in ANNOTATION_SUFFIXES
                 if (folder / f"{case}{s}").is_file()), None)


def check_options(args: argparse.Namespace) -> None:
    """BatchError for a number outside the range the engine allows (`arcoseg adapt --budget`).

    The rule is the engine's own (arcoseg.ranges, its one place for ranges: a pure-Python module,
    imported here only once the dependency check has found the engine installed)."""
    from arcoseg.errors import ArcosegError
    from arcoseg.ranges import POSITIVE

    try:
        POSITIVE.check(args.budget, "--budget")
    except ArcosegError as err:
        raise BatchError(str(err)) from None


def run_batch(args: argparse.Namespace, process_case: ProcessCase,
              log: Callable[[str], None] = print) -> int:
    """Process every case; log one line per case; return the exit code (2, before any case,
    for bad options or input)."""
    try:
        check_options(args)
        cases = list_cases(args.input)
        if args.adapt_from is not None and not args.adapt_from.is_dir():
            raise BatchError(f"Annotation folder {args.adapt_from} does not exist.")
        args.output.mkdir(parents=True, exist_ok=True)
    except (BatchError, OSError) as err:
        log(f"error: {err}")
        return EXIT_USAGE
    failed = []
    for case, image in cases:
        output = args.output / f"{case}{args.format}"
        try:
            message = process_case(case, image, find_annotation(args.adapt_from, case), output)
            log(f"[ok] {case}: {message} → {output}")
        except Exception as err:  # one bad case must not stop the batch
            failed.append(case)
            log(f"[failed] {case}: {err}")
    log(f"{len(cases) - len(failed)} of {len(cases)} case(s) segmented"
        + (f"; failed: {', '.join(failed)}" if failed else "."))
    return EXIT_FAILED if failed else EXIT_OK


def case_processor(logic: Any, args: argparse.Namespace) -> ProcessCase:
    """One case through the Logic, blocking and without dialogs: a case with annotations first
    adapts the model (`--model`, `--budget`), then its segmentation is saved to `output` (a label
    map holds the model's class values, as `arcoseg segment` writes them)."""
    mrml = logic.mrml

    def process_case(case: str, image: Path, annotation: Path | None, output: Path) -> str:
        mrml.clear_scene()
        volume = mrml.load_volume(image)
        if annotation is not None:
            result = logic.adapt(volume, mrml.load_segmentation(annotation), model=args.model,
                                 budgetSeconds=args.budget, cpuOnly=args.cpu)
            segmentation, message = result.segmentation, result.output.summary()
            model_dir = Path(result.output.model.path)
        else:
            model_dir, _ = logic.resolveModel(args.model)
            segmentation = logic.segment(volume, model=model_dir, cpuOnly=args.cpu)
            message = "segmented"
        values = segment_values(read_model_classes(model_dir), mrml.segments_of(segmentation))
        mrml.save_segmentation(segmentation, values, volume, output)
        return message
    return process_case
