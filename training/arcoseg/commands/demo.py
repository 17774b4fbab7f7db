"""`arcoseg demo`: the main job on a built-in default — adapt from three annotated slices.

A simulated clinician annotates 3 axial slices of the MNI152 brain template (grey and white
matter, from the nilearn wheel); ARCOSegment adapts a new model from scratch with every other
slice as unlabelled data, segments the volume, scores it against the full labels, writes a PNG
overlay and a report, and suggests the next slices to annotate.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Callable

from arcoseg.commands.common import HelpFormatter, add_device_arguments
from arcoseg.constants import DEMO_BUDGET, DEMO_ITERATIONS
from arcoseg.io.outputs import output_path
from arcoseg.progress import Reporter
from arcoseg.ranges import POSITIVE, POSITIVE_INT


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `demo`."""
    p = sub.add_parser("demo", help="adapt a brain model from 3 simulated annotated slices",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=HelpFormatter)
    p.add_argument("-o", "--out", type=output_path, default=Path("demo_output"),
                   help="output folder: a new or empty one, or an earlier demo's (its outputs "
                        "are replaced)")
    p.add_argument("--source", choices=("brain", "phantom"), default="brain",
                   help="brain: MNI152 template from nilearn; phantom: synthetic")
    p.add_argument("--slices", type=POSITIVE_INT, default=3, help="slices the clinician annotates")
    p.add_argument("--iterations", type=POSITIVE_INT, default=DEMO_ITERATIONS,
                   help="training iterations: fixed, so the result does not depend on how busy "
                        "the machine is")
    p.add_argument("--budget", type=POSITIVE, default=DEMO_BUDGET,
                   help="upper bound on the training time in seconds; a machine too busy to "
                        "finish the iterations within it gets fewer")
    add_device_arguments(p)
    return p


def run(args: argparse.Namespace, reporter: Reporter, stop: Callable[[], bool]) -> dict[str, Any]:
    """Load the data, then run the demo pipeline into its output folder (an earlier demo's
    outputs there replaced)."""
    from arcoseg.data.synthetic import make_phantom  # torch, MONAI: only when run
    from arcoseg.demo.brain import CLASSES, NOTICE, load_brain
    from arcoseg.demo.pipeline import MARKER, run_demo
    from arcoseg.fileutil import write_text_atomic

    earlier = check_replaceable(args.out)
    if args.source == "brain":
        image, labels = load_brain()
        classes, notice = CLASSES, NOTICE
    else:
        image, labels = make_phantom((24, 64, 64), seed=1)
        classes, notice = ["background", "class1", "class2"], ""
    for path in earlier:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / MARKER, "This folder is the output of `arcoseg demo`: the next "
                                         "demo run into it replaces the demo's files here.\n")
    return run_demo(image, labels, classes, args.out, reporter, stop, slices=args.slices,
                    budget=args.budget, iterations=args.iterations, device=args.device,
                    notice=notice)


def check_replaceable(out: Path) -> list[Path]:
    """The earlier demo's outputs in `out` (`demo.pipeline.OUTPUTS`), to be replaced; OutputError
    unless `out` is new, empty, or a folder the demo wrote (it holds `demo.pipeline.MARKER`)
    holding nothing else (hidden temporary files aside). Names alone prove nothing: a user's
    own 'inputs' or 'report.md' is never deleted."""
    from arcoseg.demo.pipeline import MARKER, OUTPUTS
    from arcoseg.errors import OutputError
    from arcoseg.io.outputs import check_output_folder

    check_output_folder(out)
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if entries and not (out / MARKER).is_file():
        raise OutputError(f"{out} is not empty and was not written by `arcoseg demo` (no "
                          f"{MARKER} file; an output of an older version has none either: "
                          "delete it). Choose a new or empty folder for -o.")
    others = [p.name for p in entries if p.name not in OUTPUTS and not p.name.startswith(".")]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise OutputError(f"{out} holds files that are not the demo's ({shown}), and the demo "
                          "replaces its outputs there. Choose a new or empty folder for -o.")
    return [p for p in entries if p.name in OUTPUTS]
