"""Segment every volume of a folder with ARCOSegment, headless.

    Slicer --no-splash --no-main-window --python-script batch_segment.py -- \\
        --input DIR --model NAME --output DIR [--adapt-from DIR] [--format .seg.nrrd] [--cpu]

Runs the module's Logic in its blocking mode (no dialogs). Exit code 0 when every case was
segmented, 1 when some failed (the others are still written), 2 on bad arguments.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the module folder

from ARCOSegmentLib.batch import EXIT_USAGE, case_processor, parse_args, run_batch  # noqa: E402


def main(argv):
    args = parse_args(argv)
    from ARCOSegment import ARCOSegmentLogic
    logic = ARCOSegmentLogic()
    plan = logic.dependencyPlan()
    if plan.needed:  # installing needs confirmation: done once from the module's panel
        print(f"error: {plan.describe()}\nOpen the ARCOSegment module once in Slicer to install "
              "them, then rerun.", file=sys.stderr)
        return EXIT_USAGE
    return run_batch(args, case_processor(logic, args))


sys.exit(main(sys.argv[1:]))
