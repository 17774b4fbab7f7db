"""Per-iteration cost of every training method, side by side in one run.

Each method runs in its own child process (so peak memory is its own) through the real training
loop (`Trainer._step`: sampling, forward, losses, backward, SGD, EMA). Prints a Markdown table of
median seconds per iteration, the ratio to `mean_teacher`, peak memory and host synchronisations
per step (`arcoseg.train.host_sync`: real ones on CUDA, would-be ones on the CPU); writes JSON too.
With --rounds N the methods run N times, interleaved (mean_teacher, arco-sg, mean_teacher, ...),
and each ratio is the median of the per-round ratios, so load from other jobs on a shared machine
hits both sides alike. --profile-ops K adds the profiler's K most expensive operations per method
(self CUDA time on a GPU, self CPU time otherwise).

    python training/benchmarks/step_cost.py --dims 2 --patch 128 128 --batch 4
    python training/benchmarks/step_cost.py --dims 3 --patch 48 64 64 --batch 2 --data ../shared/data/LA
    python training/benchmarks/step_cost.py --methods mean_teacher,arco-sg --rounds 5 --threads 2
    python training/benchmarks/step_cost.py --methods mean_teacher,arco-sg --interleave --threads 2
    python training/benchmarks/step_cost.py --interleave --cpu-time --threads 1
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

from arcoseg.ranges import NONNEG_INT, POSITIVE_INT
from arcoseg.data.synthetic import make_phantom_dataset
from arcoseg.device import describe_device, resolve_device
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg.train.trainer import Trainer, prepare_data

METHODS = ("supervised", "mean_teacher", "arco-ns", "arco-sg", "arco-sag")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dims", type=int, choices=(2, 3), default=2)
    p.add_argument("--patch", type=POSITIVE_INT, nargs="+", default=None)
    p.add_argument("--batch", type=POSITIVE_INT, default=4,
                   help="labelled (and unlabelled) batch size")
    p.add_argument("--iterations", type=POSITIVE_INT, default=15,
                   help="timed iterations per method")
    p.add_argument("--warmup", type=NONNEG_INT, default=3)
    p.add_argument("--data", type=Path, help="dataset folder (default: a synthetic phantom)")
    p.add_argument("--labelled", type=POSITIVE_INT, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--rounds", type=POSITIVE_INT, default=1,
                   help="interleaved repetitions of all methods")
    p.add_argument("--threads", type=POSITIVE_INT, help="torch CPU threads of each method's process")
    p.add_argument("--profile-ops", type=NONNEG_INT, default=0,
                   help="also list the profiler's top N operations of each method")
    p.add_argument("--amp", action="store_true",
                   help="train with --amp (bf16 on CUDA, and in 2D on CPUs with native bf16)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="default: the trainer's (on for the CPU only)")
    p.add_argument("--interleave", action="store_true",
                   help="all methods in one process, one step of each in turn (a shared, "
                        "loaded machine); prints the median of the paired ratios")
    p.add_argument("--cpu-time", action="store_true",
                   help="with --interleave: time steps by this process's CPU time, which "
                        "other jobs' load inflates less (with --threads 1: spinning worker "
                        "threads would count too)")
    p.add_argument("--out", type=Path, default=Path("results/step_cost"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _options(args: argparse.Namespace, name: str) -> TrainOptions:
    method, _, sampler = name.partition("-")
    precision = {"amp": args.amp, "channels_last": args.channels_last}
    return TrainOptions(dims=args.dims, method=method, sampler=sampler or "sg",
                        labelled=args.labelled, iterations=10**6, batch=args.batch,
                        patch=tuple(args.patch) if args.patch else None, device=args.device,
                        val_every=10**9, checkpoint_every=10**9, log_every=10**9,
                        cache_dir=args.out / "cache", **precision)


def interleaved(args: argparse.Namespace) -> None:
    """All methods in this one process, one step of each in turn, so that the load of other
    jobs hits them alike; ratio = median over iterations of step / mean_teacher's step next to
    it. Needs nothing newer than the Trainer, so it also measures older checkouts."""
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        args.data = _phantom(args)
    names = args.methods.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for name in names:
            options = _options(args, name)
            data = prepare_data(args.data, options, Reporter(quiet=True))
            trainers[name] = Trainer(data, options, Path(tmp) / name, Reporter(quiet=True))
        times: dict[str, list[float]] = {name: [] for name in names}
        clock = time.process_time if args.cpu_time else time.perf_counter
        for i in range(args.warmup + args.iterations):
            for name, trainer in trainers.items():
                start = clock()
                trainer._step()
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    times[name].append(clock() - start)
    print(f"{args.dims}D, patch {args.patch or 'default'}, batch {args.batch} + {args.batch}, "
          f"{args.iterations} interleaved iterations, threads {args.threads or 'default'}, "
          f"amp {args.amp}, channels-last {_layout(args)}, "
          f"{'CPU' if args.cpu_time else 'wall'} time\n\n"
          "| method | median s / iteration | × mean_teacher (median of paired ratios) |\n"
          "|---|---|---|")
    for name in names:
        ratio = (statistics.median(t / m for t, m in zip(times[name], times["mean_teacher"]))
                 if "mean_teacher" in times else float("nan"))
        print(f"| {name} | {statistics.median(times[name]):.3f} | {ratio:.2f} |")


def worker(args: argparse.Namespace) -> dict:
    """Measure one method in this process; print its JSON record."""
    if args.threads:
        torch.set_num_threads(args.threads)
    options = _options(args, args.worker)
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
        # log_every is 10**9: no step reads anything on the host unless something is wrong
        from arcoseg.train.host_sync import count_host_syncs

        syncs = [count_host_syncs(trainer._step, device) for _ in range(2)]
        top = _top_operations(trainer, device, args.profile_ops) if args.profile_ops else []
    record = {"method": args.worker, "seconds_per_iteration": statistics.median(times),
              "min_seconds": min(times), "peak_rss_mb": _peak_rss_mb(),
              "rss_growth_mb": _peak_rss_mb() - rss_before, "host_syncs_per_step": max(syncs),
              "top_operations": top}
    if device.type == "cuda":
        record["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return record


def _top_operations(trainer: Trainer, device: torch.device, count: int) -> list[dict]:
    """The profiler's `count` most expensive operations over two steps (self time, ms/step)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    with profile(activities=activities) as prof:
        for _ in range(2):
            trainer._step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:count]
    return [{"name": e.key, "ms_per_step": getattr(e, key) / 2000, "calls_per_step": e.count / 2}
            for e in events]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:  # what every arcoseg command does first (older checkouts have no allocator module)
        from arcoseg.allocator import keep_freed_memory
        keep_freed_memory()
    except ImportError:
        pass
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.interleave:
        interleaved(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        args.data = _phantom(args)
    methods = args.methods.split(",")
    rounds: list[dict[str, dict]] = []
    for r in range(args.rounds):
        rounds.append({})
        for method in methods:
            cmd = [sys.executable, __file__, "--worker", method, *_forward(args)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{method} failed:\n{proc.stderr[-3000:]}")
            rounds[-1][method] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"round {r + 1} {method}: "
                  f"{rounds[-1][method]['seconds_per_iteration']:.3f} s/it", file=sys.stderr)
    records = [_combine(method, [r[method] for r in rounds], rounds) for method in methods]
    info = describe_device(resolve_device(args.device))
    report = {"settings": {k: str(v) for k, v in vars(args).items() if k != "worker"},
              "device": info, "records": records}
    (args.out / "step_cost.json").write_text(json.dumps(report, indent=2))
    table = format_table(records, info, args)
    (args.out / "step_cost.md").write_text(table)
    print(table)


def _combine(method: str, runs: list[dict], rounds: list[dict[str, dict]]) -> dict:
    """One record per method over the rounds: median time, and the median of the per-round
    ratios to mean_teacher (measured side by side, so shared load affects both)."""
    record = dict(runs[0])
    record["seconds_per_iteration"] = statistics.median(r["seconds_per_iteration"] for r in runs)
    record["round_seconds"] = [r["seconds_per_iteration"] for r in runs]
    record["host_syncs_per_step"] = max(r["host_syncs_per_step"] for r in runs)
    if all("mean_teacher" in r for r in rounds):
        record["ratio"] = statistics.median(r[method]["seconds_per_iteration"]
                                            / r["mean_teacher"]["seconds_per_iteration"]
                                            for r in rounds)
    return record


def _phantom(args: argparse.Namespace) -> Path:
    patch = args.patch or TrainOptions(dims=args.dims).patch
    shape = (8, *patch) if args.dims == 2 else tuple(int(p * 1.25) for p in patch)
    return make_phantom_dataset(args.out / "phantom", num_cases=6, shape_zyx=shape, val_cases=1)


def _layout(args: argparse.Namespace) -> str:
    return "default (CPU: on)" if args.channels_last is None else str(args.channels_last)


def _forward(args: argparse.Namespace) -> list[str]:
    out = ["--dims", str(args.dims), "--batch", str(args.batch), "--iterations",
           str(args.iterations), "--warmup", str(args.warmup), "--data", str(args.data),
           "--labelled", str(args.labelled), "--device", args.device, "--out", str(args.out),
           "--profile-ops", str(args.profile_ops)]
    out += ["--threads", str(args.threads)] if args.threads else []
    out += ["--amp"] if args.amp else []
    if args.channels_last is not None:
        out += ["--channels-last" if args.channels_last else "--no-channels-last"]
    return out + (["--patch", *map(str, args.patch)] if args.patch else [])


def format_table(records: list[dict], info: dict, args: argparse.Namespace) -> str:
    """Markdown table with the ratio of each method to mean_teacher (median of the per-round
    ratios), host synchronisations per step, and the profiler's top operations if asked."""
    gpu = any("peak_gpu_mb" in r for r in records)
    lines = [f"Device: {info['name']} (torch {info['torch']}); {args.dims}D, patch "
             f"{args.patch or 'default'}, batch {args.batch} labelled + {args.batch} unlabelled "
             f"(supervised: labelled only); median of {args.iterations} iterations, "
             f"{args.rounds} interleaved round(s), threads {args.threads or 'default'}, amp "
             f"{args.amp}, channels-last {_layout(args)}.", "",
             "| method | s / iteration | × mean_teacher | host syncs / step | peak RSS MB | "
             + ("peak GPU MB |" if gpu else ""),
             "|---|---|---|---|---|" + ("---|" if gpu else "")]
    for r in records:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "–"
        row = (f"| {r['method']} | {r['seconds_per_iteration']:.3f} | {ratio} | "
               f"{r['host_syncs_per_step']} | {r['peak_rss_mb']:.0f} |")
        lines.append(row + (f" {r.get('peak_gpu_mb', 0):.0f} |" if gpu else ""))
    for r in records:
        if r.get("top_operations"):
            lines += ["", f"Top operations of {r['method']} (self time, ms / step):", ""]
            lines += [f"- {op['name']}: {op['ms_per_step']:.2f} ms ({op['calls_per_step']:.0f} "
                      "calls)" for op in r["top_operations"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
