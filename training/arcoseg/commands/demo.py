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
                   help="output folder, replaced on every run")
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
    from arcoseg.data.synthetic import make_phantom  # torch, MONAI: only when run
    from arcoseg.demo.brain import CLASSES, NOTICE, load_brain
    from arcoseg.demo.pipeline import run_demo

    """Load the data, then run the demo pipeline into a fresh output folder."""
    check_replaceable(args.out)
    if args.source == "brain":
        image, labels = load_brain()
        classes, notice = CLASSES, NOTICE
    else:
        image, labels = make_phantom((24, 64, 64), seed=1)
        classes, notice = ["background", "class1", "class2"], ""
    shutil.rmtree(args.out, ignore_errors=True)  # checked above: empty or a former demo output
    return run_demo(image, labels, classes, args.out, reporter, stop, slices=args.slices,
                    budget=args.budget, iterations=args.iterations, device=args.device,
                    notice=notice)


def check_replaceable(out: Path) -> None:
    """OutputError unless `out` can be the demo's output folder: new, empty, or an earlier
    demo's, finished or interrupted (it is replaced whole, so a folder of other files is never
    deleted)."""
    from arcoseg.demo.pipeline import REPORT_NAME
    from arcoseg.errors import OutputError
    from arcoseg.io.outputs import check_output_folder

    check_output_folder(out)
    earlier_demo = (out / REPORT_NAME).is_file() or (out / "inputs" / "image.nii.gz").is_file()
    if out.is_dir() and any(out.iterdir()) and not earlier_demo:
        raise OutputError(f"{out} holds files that are not an earlier demo's output, and the demo "
                          "replaces its output folder whole. Choose a new or empty folder for -o.")
