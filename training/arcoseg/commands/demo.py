"""`arcoseg demo`: the main job on a built-in default — adapt from three annotated slices.

A simulated clinician annotates 3 axial slices of the MNI152 brain template (grey and white
matter, from the nilearn wheel); ARCOSegment adapts a new model from scratch with every other
slice as unlabelled data, segments the volume, scores it against the full labels, writes a PNG
overlay and a report, and suggests the next slices to annotate.
"""

from __future__ import annotations

import argparse
import time
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
                   help="output folder: a new or empty one, or an earlier demo run's (the files "
                        "that run wrote are replaced; anything else there is refused)")
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
    """Load the data, then run the demo pipeline into its output folder (an earlier run's files
    there replaced: `demo.folder`)."""
    import SimpleITK as sitk  # SimpleITK, torch, MONAI: only when run

    from arcoseg.data.synthetic import make_phantom
    from arcoseg.demo.brain import CLASSES, NOTICE, load_brain
    from arcoseg.demo.folder import finish, replaceable, start
    from arcoseg.demo.pipeline import pick_slices, run_demo
    from arcoseg.errors import Cancelled

    earlier = replaceable(args.out)
    if args.source == "brain":
        image, labels = load_brain()
        classes, notice = CLASSES, NOTICE
    else:
        image, labels = make_phantom((24, 64, 64), seed=1)
        classes, notice = ["background", "class1", "class2"], ""
    # refused now, before an earlier run's files are deleted
    pick_slices(sitk.GetArrayFromImage(labels), 0, args.slices)
    started_ns = time.time_ns() - 2 * 10**9  # a margin for the file system's clock
    start(earlier, args.out)
    try:
        return run_demo(image, labels, classes, args.out, reporter, stop, slices=args.slices,
                        budget=args.budget, iterations=args.iterations, device=args.device,
                        notice=notice)
    except Cancelled as err:  # adapt's "nothing was saved" is not true of the demo's folder
        raise Cancelled(f"Demo stopped: {args.out} holds what this run wrote so far (an earlier "
                        "run's outputs there were replaced). Run the same command again to "
                        "redo it.") from err
    finally:  # also after an error or Ctrl-C: what this run wrote, the next one may replace
        finish(args.out, started_ns)
