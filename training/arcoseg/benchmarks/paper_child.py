"""The paper benchmark's training processes: each run trains in its own `arcoseg train`
process, whose progress is relayed, whose exit code and peak memory are kept, and to which
SIGINT/SIGTERM are forwarded (`arcoseg.benchmarks.paper`)."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from arcoseg.benchmarks.paper_runs import RunSpec
from arcoseg.cli import StopFlag
from arcoseg.device import describe_device
from arcoseg.progress import Reporter


class ChildStop(StopFlag):
    """SIGINT/SIGTERM: stop after the current step of work and ask the training process to save
    a checkpoint and stop. It runs in its own session, so a terminal's Ctrl-C reaches it only
    through this forward (once per signal; a second one aborts it, as in `arcoseg`)."""

    def __init__(self) -> None:
        super().__init__()
        self.child_pid: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.child_pid is not None:
            # os.kill, not Popen.send_signal: that would reap the child and lose its rusage.
            try:
                os.kill(self.child_pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        super()._handle(signum, frame)


@dataclass
class ChildOutcome:
    """What a training process reported and cost."""

    exit_code: int
    result: dict[str, Any] | None
    error: str | None
    wall_seconds: float
    peak_rss_mb: float | None


def run_training_process(command: list[str], spec: RunSpec, reporter: Reporter,
                         stop: ChildStop) -> ChildOutcome:
    """Run `arcoseg train` in a child process, relaying its progress; log its output."""
    start = time.monotonic()
    result, error = None, None
    with (spec.run_dir / "train.log").open("a", encoding="utf-8") as log, \
            (spec.run_dir / "train.stderr").open("a", encoding="utf-8") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)
        stop.child_pid = proc.pid
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                log.write(line)
                log.flush()
                event = _parse_event(line)
                if event.get("event") == "progress":
                    extra = {k: v for k, v in event.items()
                             if k not in ("event", "step", "total", "message")}
                    reporter.progress(event["step"], event["total"],
                                      f"{spec.key}: {event.get('message', '')}", **extra)
                elif event.get("event") == "log":
                    reporter.log(f"{spec.key}: {event.get('message', '')}")
                elif event.get("event") == "result":
                    result = {k: v for k, v in event.items() if k != "event"}
                elif event.get("event") == "error":
                    error = event.get("message")
        finally:
            exit_code, peak = _wait(proc)
            stop.child_pid = None
    return ChildOutcome(exit_code, result, error, round(time.monotonic() - start, 2), peak)


def _parse_event(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return event if isinstance(event, dict) else {}


def _wait(proc: subprocess.Popen) -> tuple[int, float | None]:
    """Reap the child; its exit code and peak resident memory in MB (None where unknown)."""
    if not hasattr(os, "wait4"):  # Windows: no per-child rusage
        return proc.wait(), None
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    scale = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, else KiB
    return proc.returncode, round(usage.ru_maxrss / scale, 1)


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where a run was trained: host, CPU, cores, torch threads, device name, versions."""
    return {"host": platform.node(), "platform": platform.platform(), "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": describe_device(device)["name"], "torch": torch.__version__,
            "python": platform.python_version()}


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
