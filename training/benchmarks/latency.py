"""Latency of a warm engine (`arcoseg serve`) against the one-shot command, in one run.

For each model (the cpu profile's 2D model: ACDC settings, 2 mm in-plane, 128x128 windows; and
its 3D model: LA settings, 1.25 mm, 48x64x64 windows; untrained weights, since only time is
measured) on one synthetic volume of 128 x 256 x 256 voxels (z, y, x) at 1 mm:
- cold: `python -m arcoseg segment MODEL IMAGE -o OUT` as a fresh process, wall time;
- warm: the same command line as a request to one `arcoseg serve` worker (started once, before
  the first request), from sending the request to its final event; the first request loads the
  model, the second finds it cached (with --check-first a `models check` has loaded it and
  prepared its kernels before the first, as the Slicer module does when a model is chosen).
Cold and warm runs alternate (cold, warm, cold, warm ...) so that the load of a shared machine
hits both alike; the table gives the ratios warm/cold. Then Adapt: time from starting
`arcoseg adapt` (cold) or sending the adapt request (warm) to its first training progress event
(iteration 5: adapt reports every 5 iterations), 2 annotated slices, the 2D model as parent.

    python training/benchmarks/latency.py --out /tmp/latency [--dims 2 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from arcoseg.benchmarks.profiles import PROFILES
from arcoseg.data.plan import Plan
from arcoseg.model_metadata import ModelMetadata, make_classes
from arcoseg.modelfile import save_model
from arcoseg.networks import NetworkConfig, build_model
from arcoseg.ranges import POSITIVE_INT

SHAPE = (128, 256, 256)  # (z, y, x) voxels at 1 mm: the volume
# Seconds between one run's end and the next run's start: with --threads auto a command counts
# the cores busy over the last second or so, and the previous run (a process of this benchmark,
# not another user's program) would otherwise still count as busy. A user's clicks are further
# apart than this.
PAUSE = 1.5
CLASSES = ["background", "a", "b"]
MODELS = {2: ("unet2d", PROFILES["cpu"].datasets["ACDC"]),
          3: ("vnet3d", PROFILES["cpu"].datasets["LA"])}


def make_inputs(folder: Path, dims_list: list[int], shape: tuple[int, int, int]
                ) -> dict[str, Path]:
    """The volume, 2-slice annotations for Adapt, and one untrained model per dimension."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:shape[0], :shape[1], :shape[2]] / np.array(shape)[:, None, None, None]
    blob = ((zz - .5) / .3) ** 2 + ((yy - .5) / .27) ** 2 + ((xx - .5) / .23) ** 2 < 1
    array = (100 * blob + rng.normal(0, 20, shape)).astype(np.float32)
    labels = np.full(shape, 255, np.uint8)  # unannotated ...
    for z in (shape[0] * 5 // 16, shape[0] * 10 // 16):  # ... except two axial slices
        labels[z] = blob[z].astype(np.uint8)
    paths = {"image": folder / "volume.nii.gz", "annotations": folder / "annotations.nii.gz"}
    for key, data in (("image", array), ("annotations", labels)):
        sitk.WriteImage(sitk.GetImageFromArray(data), str(paths[key]))
    for dims in dims_list:
        arch, settings = MODELS[dims]
        config = NetworkConfig(arch=arch, in_channels=1, num_classes=len(CLASSES))
        plan = Plan(dims=dims, target_spacing=settings.spacing, normalization="zscore",
                    label_values=[0, 1, 2], patch_size=settings.patch)
        paths[f"model{dims}"] = folder / f"model{dims}d"
        save_model(paths[f"model{dims}"], build_model(config).eval(),
                   ModelMetadata(network=config, classes=make_classes(CLASSES),
                                 plan=plan.to_dict()))
    return paths


class Worker:
    """An `arcoseg serve` child and the events it prints, by request id."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "arcoseg", "serve"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.events.get(timeout=600)["event"] == "ready"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def request(self, request_id: str, argv: list[str], until=None) -> tuple[float, dict]:
        """(seconds from sending to the final event or the first event `until` accepts, it)."""
        time.sleep(PAUSE)
        start = time.perf_counter()
        self.proc.stdin.write(json.dumps({"id": request_id, "argv": argv}) + "\n")
        self.proc.stdin.flush()
        while True:
            event = self.events.get(timeout=3600)
            if event.get("id") == request_id and ("exit_code" in event or (until and until(event))):
                return time.perf_counter() - start, event

    def cancel(self, request_id: str) -> None:
        self.proc.stdin.write(json.dumps({"id": "c-" + request_id, "cancel": request_id}) + "\n")
        self.proc.stdin.flush()
        while not (self.events.get(timeout=600).get("id") == request_id):
            pass

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(600)


def one_shot(argv: list[str], env: dict[str, str], until=None) -> tuple[float, dict]:
    """Wall time of `arcoseg ARGV --progress json` to its end (or to the first `until` event)."""
    time.sleep(PAUSE)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "arcoseg", *argv, "--progress", "json"],
                            env=env, stdout=subprocess.PIPE, text=True)
    event: dict = {}
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if until and until(event):
            seconds = time.perf_counter() - start
            proc.terminate()
            proc.wait()
            return seconds, event
    proc.wait()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"arcoseg {' '.join(argv)} failed: {event}")
    return seconds, event


def is_training(event: dict) -> bool:
    return event.get("event") == "progress" and event.get("message") == "training"


def _threads(text: str) -> int | str:
    return "auto" if text == "auto" else POSITIVE_INT(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3], choices=(2, 3))
    parser.add_argument("--rounds", type=POSITIVE_INT, default=2, help="cold/warm pairs per model")
    parser.add_argument("--threads", type=_threads, default=1,
                        help="torch threads, both ways; 'auto': the commands choose (--threads "
                             "left out, as the Slicer module sends them)")
    parser.add_argument("--no-adapt", dest="adapt", action="store_false")
    parser.add_argument("--check-first", action="store_true",
                        help="send `models check MODEL` to the worker before its first segment "
                             "with each model (untimed), as the Slicer module does when a model "
                             "is chosen")
    parser.add_argument("--shape", type=POSITIVE_INT, nargs=3, default=SHAPE,
                        metavar=("Z", "Y", "X"),
                        help="volume size (default 128 256 256; smaller only to try the script)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = make_inputs(args.out, args.dims, tuple(args.shape))
    env = {**os.environ, "ARCOSEG_HOME": str(args.out / "home")}
    if args.threads != "auto":
        env["OMP_NUM_THREADS"] = str(args.threads)
    threads = [] if args.threads == "auto" else ["--threads", str(args.threads)]
    worker = Worker(env)
    rows, n = [], 0
    for dims in args.dims:
        cold, warm = [], []
        for r in range(args.rounds):
            argv = ["segment", str(paths[f"model{dims}"]), str(paths["image"]), "-o",
                    str(args.out / f"seg{dims}d_{r}.nii.gz"), "--device", "cpu", *threads]
            cold.append(one_shot(argv, env)[0])
            n += 1
            if args.check_first and r == 0:
                check = ["models", "check", str(paths[f"model{dims}"]), "--device", "cpu",
                         *threads]
                seconds, final = worker.request(f"k{n}", check)
                assert final["exit_code"] == 0, final
                print(f"{dims}D models check: {seconds:.1f} s", file=sys.stderr, flush=True)
            seconds, final = worker.request(f"s{n}", argv)
            assert final["exit_code"] == 0, final
            warm.append(seconds)
            print(f"{dims}D round {r + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s",
                  file=sys.stderr, flush=True)
        rows.append((f"segment, {dims}D model", cold, warm))
    if args.adapt:
        argv = ["adapt", "--image", str(paths["image"]), "--annotations",
                str(paths["annotations"]), "--model", str(paths[f"model{args.dims[0]}"]),
                "--name", "latency", "--iterations", "1000", "--budget", "600", "--device",
                "cpu", *threads, "-o", str(args.out / "adapted.nii.gz")]
        cold_s, _ = one_shot(argv, env, until=is_training)
        warm_s, event = worker.request("a1", argv, until=is_training)
        worker.cancel("a1")
        rows.append((f"adapt to iteration {event.get('step')}, {args.dims[0]}D", [cold_s],
                     [warm_s]))
    worker.close()
    print_table(rows, args)


def print_table(rows, args) -> None:
    print(f"\n`python training/benchmarks/latency.py --out OUT --dims "
          f"{' '.join(map(str, args.dims))} --rounds {args.rounds} --threads {args.threads}"
          f"{' --check-first' if args.check_first else ''}` "
          f"(volume {' x '.join(map(str, args.shape))}, CPU)\n")
    print("| request | cold one-shot, s (each) | warm serve, s (each) | warm/cold |")
    print("|---|---|---|---|")
    for name, cold, warm in rows:
        ratios = ", ".join(f"{w / c:.0%}" for c, w in zip(cold, warm))
        print(f"| {name} | {', '.join(f'{c:.1f}' for c in cold)} | "
              f"{', '.join(f'{w:.1f}' for w in warm)} | {ratios} "
              f"(median {statistics.median(w / c for c, w in zip(cold, warm)):.0%}) |")


if __name__ == "__main__":
    main()
