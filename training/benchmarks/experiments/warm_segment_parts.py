"""What each part of session 16's warm-path change is worth: one model segments one volume in one
process (`inference.segment_file`, the model kept loaded and fused once, as in `arcoseg serve`),
four times; the first call is reported alone, the median of the other three as "warm". Each
variant runs in its own child process (the allocator settings are per process), variants in
turn, `--rounds` times:
- all: what the engine does;
- no-allocator: without `allocator.keep_freed_memory` (glibc's own thresholds);
- no-transposed-fusion: the ReLUs after transposed convolutions separate again;
- itk-gzip: `.nii.gz` compressed by ITK's NIfTI writer instead of `io.image_files.write_nifti_gz`;
- with `--compare DIR`, also another engine's training/ folder as it is ("compared").

    python training/benchmarks/latency.py --out /tmp/lat --dims 3 --rounds 1 --no-adapt
    PYTHONPATH=training python training/benchmarks/experiments/warm_segment_parts.py \\
        --model /tmp/lat/model3d --image /tmp/lat/volume.nii.gz --threads 2 --rounds 2 \\
        [--compare OLD/training]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from arcoseg.benchmarks.engines import run_in_engine
from arcoseg.ranges import POSITIVE_INT

THIS_ENGINE = Path(__file__).resolve().parents[2]
VARIANTS = ("all", "no-allocator", "no-transposed-fusion", "itk-gzip")

# Run in the child with PYTHONPATH = the engine under test; argv[1] is a JSON job.
CHILD = r"""
import json, statistics, sys, time
from pathlib import Path
import torch
job = json.loads(sys.argv[1])
if job["variant"] not in ("no-allocator", "compared"):
    from arcoseg.allocator import keep_freed_memory
    keep_freed_memory()
if job["variant"] == "no-transposed-fusion":
    import arcoseg.networks.fused as fused
    fused._TRANSPOSE_POINTWISE = None
if job["variant"] == "itk-gzip":
    import arcoseg.io.images as images
    images._IMAGE_WRITERS[".nii.gz"] = images._write_with_simpleitk
from arcoseg.inference import segment_file
from arcoseg.modelfile import load_model
from arcoseg.networks.fused import keep_inference_network
torch.set_num_threads(job["threads"])
model, metadata = load_model(job["model"])
keep_inference_network(model)
seconds = []
for _ in range(4):
    start = time.perf_counter()
    segment_file(model, metadata, [Path(job["image"])], Path(job["out"]), torch.device("cpu"))
    seconds.append(time.perf_counter() - start)
print(json.dumps({"first": seconds[0], "warm": statistics.median(seconds[1:])}))
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="a model folder")
    p.add_argument("--image", type=Path, required=True, help="the volume to segment")
    p.add_argument("--threads", type=POSITIVE_INT, default=2)
    p.add_argument("--rounds", type=POSITIVE_INT, default=2)
    p.add_argument("--compare", type=Path, help="another engine's training/ folder")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs = [(v, THIS_ENGINE) for v in VARIANTS]
    runs += [("compared", args.compare)] if args.compare else []
    results: dict[str, list[dict]] = {name: [] for name, _ in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, engine in runs:
                job = {"variant": name, "model": str(args.model), "image": str(args.image),
                       "threads": args.threads, "out": str(Path(tmp) / "labels.nii.gz")}
                results[name].append(run_in_engine(engine, CHILD, job))
                print(name, results[name][-1], flush=True)
    print("\n| variant | first call, s (each round) | warm median, s (each round) |")
    print("|---|---|---|")
    for name, rows in results.items():
        first, warm = (", ".join(f"{r[key]:.2f}" for r in rows) for key in ("first", "warm"))
        print(f"| {name} | {first} | {warm} |")


if __name__ == "__main__":
    main()
