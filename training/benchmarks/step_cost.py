"""Per-iteration cost of every training method, side by side in one run.

Each method runs in its own child process (so peak memory is its own) through the real training
loop (`Trainer._step`: sampling, forward, losses, backward, SGD, EMA). Prints a Markdown table of
median seconds per iteration, the ratio to `mean_teacher`, and peak memory; writes JSON too.

    python training/benchmarks/step_cost.py --dims 2 --patch 128 128 --batch 4
    python training/benchmarks/step_cost.py --dims 3 --patch 48 64 64 --batch 2 --data ../shared/data/LA
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from arcoseg.data.synthetic import make_phantom_dataset
from arcoseg.device import describe_device, resolve_device
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg.train.trainer import Trainer, prepare_data

METHODS = ("supervised", "mean_teacher", "arco-ns", "arco-sg", "arco-sag")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dims", type=int, choices=(2, 3), default=2)
    p.add_argument("--patch", type=int, nargs="+", default=None)
    p.add_argument("--batch", type=int, default=4, help="labelled (and unlabelled) batch size")
    p.add_argument("--iterations", type=int, default=15, help="timed iterations per method")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--data", type=Path, help="dataset folder (default: a synthetic phantom)")
    p.add_argument("--labelled", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", type=Path, default=Path("results/step_cost"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(args: argparse.Namespace) -> dict:
    """Measure one method in this process; print its JSON record."""
    method, _, sampler = args.worker.partition("-")
    options = TrainOptions(dims=args.dims, method=method, sampler=sampler or "sg",
                           labelled=args.labelled, iterations=10**6, batch=args.batch,
                           patch=tuple(args.patch) if args.patch else None, device=args.device,
                           val_every=10**9, checkpoint_every=10**9, log_every=10**9,
                           cache_dir=args.out / "cache")
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_data(args.data, options, Reporter(quiet=True))
        trainer = Trainer(data, options, Path(tmp), Reporter(quiet=True))
        device = trainer.device
        rss_before = _peak_rss_mb()
        times = []
        for i in range(args.warmup + args.iterations):
            if device.type == "cuda":
                torch.cuda.synchronize()
                if i == args.warmup:
                    torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            trainer._step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - start)
    record = {"method": args.worker, "seconds_per_iteration": statistics.median(times),
              "min_seconds": min(times), "peak_rss_mb": _peak_rss_mb(),
              "rss_growth_mb": _peak_rss_mb() - rss_before}
    if device.type == "cuda":
        record["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return record


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        args.data = _phantom(args)
    records = []
    for method in args.methods.split(","):
        cmd = [sys.executable, __file__, "--worker", method, *_forward(args)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
        records.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{method}: {records[-1]['seconds_per_iteration']:.3f} s/it", file=sys.stderr)
    info = describe_device(resolve_device(args.device))
    report = {"settings": {k: str(v) for k, v in vars(args).items() if k != "worker"},
              "device": info, "records": records}
    (args.out / "step_cost.json").write_text(json.dumps(report, indent=2))
    table = format_table(records, info, args)
    (args.out / "step_cost.md").write_text(table)
    print(table)


def _phantom(args: argparse.Namespace) -> Path:
    patch = args.patch or TrainOptions(dims=args.dims).patch
    shape = (8, *patch) if args.dims == 2 else tuple(int(p * 1.25) for p in patch)
    return make_phantom_dataset(args.out / "phantom", num_cases=6, shape_zyx=shape, val_cases=1)


def _forward(args: argparse.Namespace) -> list[str]:
    out = ["--dims", str(args.dims), "--batch", str(args.batch), "--iterations",
           str(args.iterations), "--warmup", str(args.warmup), "--data", str(args.data),
           "--labelled", str(args.labelled), "--device", args.device, "--out", str(args.out)]
    return out + (["--patch", *map(str, args.patch)] if args.patch else [])


def format_table(records: list[dict], info: dict, args: argparse.Namespace) -> str:
    """Markdown table with the ratio of each method to mean_teacher."""
    base = next((r["seconds_per_iteration"] for r in records if r["method"] == "mean_teacher"),
                None)
    gpu = any("peak_gpu_mb" in r for r in records)
    lines = [f"Device: {info['name']} (torch {info['torch']}); {args.dims}D, patch "
             f"{args.patch or 'default'}, batch {args.batch} labelled + {args.batch} unlabelled "
             f"(supervised: labelled only); median of {args.iterations} iterations.", "",
             "| method | s / iteration | × mean_teacher | peak RSS MB | "
             + ("peak GPU MB |" if gpu else ""),
             "|---|---|---|---|" + ("---|" if gpu else "")]
    for r in records:
        ratio = f"{r['seconds_per_iteration'] / base:.2f}" if base else "–"
        row = (f"| {r['method']} | {r['seconds_per_iteration']:.3f} | {ratio} | "
               f"{r['peak_rss_mb']:.0f} |")
        lines.append(row + (f" {r.get('peak_gpu_mb', 0):.0f} |" if gpu else ""))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
