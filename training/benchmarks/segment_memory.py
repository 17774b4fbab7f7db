"""Peak memory of `segment` per input voxel (issue 17 item 7): this engine vs another checkout.

Each measurement runs in its own child process: it loads a 3-class 2D model, resets the kernel's
peak-RSS mark (/proc/self/clear_refs), segments one synthetic float32 volume with
`inference.segment_file` (read, preprocess, predict, resample back, argmax, write the label map)
and reports the peak RSS above the RSS before: everything segment holds, the input image
included. The network's activations for one batch of windows are a fixed cost (about 100 MB at
--batch 8), so each grid is segmented at two depths and the cost per voxel is the difference of
the peaks over the difference of the voxel counts (the fixed part cancels); the peak of the
deeper volume is shown too. Three grids: the model's own spacing (no resampling), a finer input
(the model grid has half the voxels) and a coarser one (twice). `--compare DIR` measures another
engine the same way, e.g. the code before issue 17:

    git -C /work/main archive 6e12738 training | tar -x -C /tmp/old
    python training/benchmarks/segment_memory.py --compare /tmp/old/training

Prints a Markdown table (bytes per voxel, peak, seconds, ratios to the first engine) and writes
JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from arcoseg.data.plan import Plan
from arcoseg.model_metadata import ModelMetadata, make_classes
from arcoseg.modelfile import save_model
from arcoseg.networks import NetworkConfig, build_model
from arcoseg.benchmarks.engines import run_in_engine
from arcoseg.ranges import POSITIVE_INT

THIS_ENGINE = Path(__file__).resolve().parents[1]
MODEL_SPACING = 1.0  # mm in-plane (a 2D model keeps the z spacing)
GRIDS = {"model grid": 1.0, "finer input": 0.7, "coarser input": 1.4}  # input in-plane mm

# Run in the child with PYTHONPATH = the engine under test; argv[1] is a JSON job.
CHILD = r"""
import json, os, sys, time, torch
job = json.loads(sys.argv[1])
torch.set_num_threads(1)
try:  # what every command does first (engines before 2026-12-02 have no allocator module)
    from arcoseg.allocator import keep_freed_memory
    keep_freed_memory()
except ImportError:
    pass
from arcoseg.inference import segment_file
from arcoseg.modelfile import load_model
model, metadata = load_model(job["model"], device=torch.device("cpu"))
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
start = time.perf_counter()
segment_file(model, metadata, [job["image"]], job["out"], torch.device("cpu"),
             batch_size=job["batch"])
print(json.dumps({"peak_bytes": status("VmHWM:") - before,
                  "seconds": time.perf_counter() - start}))
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", type=POSITIVE_INT, nargs=3, default=(48, 256, 256),
                   metavar=("Z", "Y", "X"),
                   help="the deeper input volume (default 48 256 256); the other has Z/3 slices")
    p.add_argument("--batch", type=POSITIVE_INT, default=8,
                   help="slices per forward pass (segment --batch)")
    p.add_argument("--compare", type=Path, help="the training/ folder of another engine")
    p.add_argument("--one-size", action="store_true",
                   help="segment --shape only; bytes / voxel is then the whole peak per voxel, "
                        "the fixed activations included (for large volumes, where they are small)")
    p.add_argument("--grids", default=",".join(GRIDS), help="which grids (default all)")
    p.add_argument("--out", type=Path, default=Path("results/segment_memory"))
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def make_model(folder: Path) -> Path:
    """An untrained 3-class 2D model (memory does not depend on the weights' values)."""
    torch.manual_seed(0)
    config = NetworkConfig(arch="unet2d", in_channels=1, num_classes=3,
                           features=(8, 16, 32, 64, 128), head_dim=16)
    plan = Plan(dims=2, target_spacing=(2.0, MODEL_SPACING, MODEL_SPACING),
                normalization="zscore", label_values=[0, 1, 2], patch_size=(128, 128))
    save_model(folder, build_model(config).eval(), ModelMetadata(
        network=config, classes=make_classes(["background", "a", "b"]), plan=plan.to_dict()))
    return folder


def make_image(path: Path, shape: tuple[int, int, int], spacing: float) -> Path:
    """A float32 volume of smooth blobs and noise with the given in-plane spacing."""
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    blobs = np.sin(x / 17.0) * np.cos(y / 23.0) + np.sin(z / 5.0)
    array = (blobs + 0.3 * rng.standard_normal(shape)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((spacing, spacing, 2.0))
    sitk.WriteImage(image, str(path))
    return path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    shapes = ([tuple(args.shape)] if args.one_size
              else [(max(args.shape[0] // 3, 1), *args.shape[1:]), tuple(args.shape)])
    voxels = [int(np.prod(shape)) for shape in shapes]
    engines = {"this engine": THIS_ENGINE, **({"compared": args.compare} if args.compare else {})}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp) / "model")
        for grid in args.grids.split(","):
            spacing = GRIDS[grid]
            images = [make_image(Path(tmp) / f"image_{spacing}_{s[0]}.nrrd", s, spacing)
                      for s in shapes]
            for name, engine in engines.items():
                results = [run_in_engine(engine, CHILD, {"model": str(model),
                                                         "image": str(image),
                                            "batch": args.batch,
                                            "out": str(Path(tmp) / "seg.nii.gz")})
                           for image in images]
                slope = (results[0]["peak_bytes"] / voxels[0] if args.one_size else
                         (results[1]["peak_bytes"] - results[0]["peak_bytes"])
                         / (voxels[1] - voxels[0]))
                rows.append({"grid": grid, "engine": name, "engine_path": str(engine),
                             "bytes_per_voxel": slope, "peak_mb": results[-1]["peak_bytes"] / 1e6,
                             "peak_bytes_per_voxel": results[-1]["peak_bytes"] / voxels[-1],
                             "seconds": results[-1]["seconds"]})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "segment_memory.json").write_text(json.dumps(
        {"shapes": shapes, "batch": args.batch, "rows": rows}, indent=2) + "\n")
    print(table(rows, shapes))


def table(rows: list[dict], shapes) -> str:
    (z0, y, x), z1 = shapes[0], shapes[-1][0]
    depths = f"{z0} and {z1}" if len(shapes) > 1 else f"{z1}"
    lines = [f"Inputs {depths} × {y} × {x} float32, 3 classes, 2D model, label map only",
             "", "| grid | engine | bytes / voxel | peak MB (Z = "
             f"{z1}) | peak / voxel | seconds | memory ratio | time ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        base = next(r for r in rows if r["grid"] == row["grid"])
        lines.append(f"| {row['grid']} | {row['engine']} | {row['bytes_per_voxel']:.1f} | "
                     f"{row['peak_mb']:.0f} | {row['peak_bytes_per_voxel']:.1f} | "
                     f"{row['seconds']:.1f} | "
                     f"{row['bytes_per_voxel'] / base['bytes_per_voxel']:.2f} | "
                     f"{row['seconds'] / base['seconds']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
