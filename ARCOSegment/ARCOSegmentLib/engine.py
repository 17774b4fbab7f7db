"""Engine commands (`segment`, `adapt`) and jobs: a process, a work folder, a finishing step.

A job runs the engine, then hands its result to `finish` (e.g. load the label map into the scene)
on the thread that polls or waits, and removes its work folder. GUI: `start()` then `poll()` from
a timer; scripts: `wait()`. No Slicer import.

The command lines and result shapes follow the engine's CLI (training/arcoseg/commands/segment.py
and adapt.py, result built in arcoseg/adapt/run.py); Testing/slicer runs them against it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, Sequence, TypeVar

from ARCOSegmentLib.models import ModelEntry
from ARCOSegmentLib.events import EngineCallbacks, EngineError
from ARCOSegmentLib.process import EngineProcess

T = TypeVar("T")


def device_option(cpu_only: bool) -> list[str]:
    """`--device cpu` with the CPU override, else `--device auto`."""
    return ["--device", "cpu" if cpu_only else "auto"]


def segment_args(model_dir: str | Path, image: str | Path, output: str | Path, *,
                 entropy: bool = False, cpu_only: bool = False) -> list[str]:
    """`segment MODEL_DIR IMAGE -o OUT [--entropy] --device …`."""
    return ["segment", str(model_dir), str(image), "-o", str(output),
            *(["--entropy"] if entropy else []), *device_option(cpu_only)]


def check_args(model_dir: str | Path, *, cpu_only: bool = False) -> list[str]:
    """`models check MODEL_DIR --device …`: in the warm worker, load the model and prepare its
    kernels now, so that the next Segment with the same folder and device starts at once."""
    return ["models", "check", str(model_dir), *device_option(cpu_only)]


def adapt_args(image: str | Path, annotations: str | Path, output: str | Path, *,
               model: str | Path | None = None, new_classes: Sequence[str] | None = None,
               name: str | None = None, axis: int | None = None,
               unlabelled: Sequence[str | Path] = (), budget_seconds: float | None = None,
               iterations: int | None = None, cpu_only: bool = False) -> list[str]:
    """`adapt --image … --annotations … (--model M | --from-scratch --classes A,B) [--name N] …`.

    `annotations` is a label map on the image's grid: class indices 1..n, 0 = background on
    annotated slices, 255 = unannotated. `name` names the new version's model in the registry
    (default: the parent's; from scratch the engine's default)."""
    if (model is None) == (new_classes is None):
        raise ValueError("Adapt needs either a model to start from or the classes of a new model.")
    args = ["adapt", "--image", str(image), "--annotations", str(annotations),
            "--axis", "auto" if axis is None else str(axis)]
    if unlabelled:
        args += ["--unlabelled", *map(str, unlabelled)]
    if model is not None:
        args += ["--model", str(model)]
    else:
        if not new_classes or any("," in c or not c.strip() for c in new_classes):
            raise ValueError("Class names for a new model must be non-empty and contain no comma.")
        args += ["--from-scratch", "--classes", ",".join(new_classes)]
    if name:
        args += ["--name", name]
    if budget_seconds is not None:
        args += ["--budget", str(int(round(budget_seconds)))]
    if iterations is not None:
        args += ["--iterations", str(int(iterations))]
    return [*args, "-o", str(output), *device_option(cpu_only)]


@dataclass(frozen=True)
class SegmentOutput:
    """What `segment` wrote for one image."""

    labels: Path
    entropy: Path | None
    seconds: float
    classes: list[str]
    device: str


def parse_segment_result(result: Mapping[str, Any]) -> SegmentOutput:
    """The first (only) output of a `segment` result."""
    outputs = result.get("outputs") or []
    if not outputs:
        raise EngineError("The engine reported no segmentation output.")
    first = outputs[0]
    return SegmentOutput(labels=Path(first["labels"]),
                         entropy=Path(first["entropy"]) if first.get("entropy") else None,
                         seconds=float(first.get("seconds") or 0.0),
                         classes=[str(c) for c in result.get("classes", [])],
                         device=str(result.get("device", "")))


@dataclass(frozen=True)
class AdaptOutput:
    """What `adapt` reports: the new version, the held-out check, the next slices to annotate
    (indices along `axis` of the image it was given) and the segmentation it wrote."""

    model: ModelEntry
    heldout_slice: int | None
    parent_dice: float | None
    adapted_dice: float | None
    activated: bool
    axis: int
    suggested_slices: list[int] = field(default_factory=list)
    labels: Path | None = None
    iterations: int = 0
    seconds: float = 0.0
    copy_dice: float | None = None  # copying the nearest drawn slice onto the held-out one
    output_dice: float | None = None  # the model fused with the drawing (Adapt's output
    # unless the copy is far worse than the model there: then the model alone is written)
    fusion_weight: float | None = None  # the drawing's weight in what was written (0: model alone)

    def heldout_check(self) -> str:
        """The held-out check in words: 'held-out slice 17, Dice 0.710 → 0.802 (activated)',
        with the nearest-slice copy's Dice when the engine reports it."""
        if self.activated:
            verdict = "activated"
        elif self.parent_dice is None:  # from scratch: only the copy can have beaten it
            verdict = "saved, not active: copying the nearest drawn slice scored higher"
        else:
            verdict = "saved, previous version kept active"
        if self.heldout_slice is None:
            return f"no held-out check (only one annotated slice); {verdict}"

        def fmt(value):
            return "n/a" if value is None else f"{value:.3f}"
        copied = "" if self.copy_dice is None else f"; nearest-slice copy {fmt(self.copy_dice)}"
        if self.fusion_weight == 0:  # the engine's rule or the user's --fusion-weight 0
            if self.output_dice is not None:
                copied += f"; model + drawing {fmt(self.output_dice)}"
            copied += "; the segmentation is the model alone"
        elif self.output_dice is not None:
            copied += f"; segmentation (model + drawing) {fmt(self.output_dice)}"
        return (f"held-out slice {self.heldout_slice}, Dice {fmt(self.parent_dice)} → "
                f"{fmt(self.adapted_dice)}{copied} ({verdict})")

    def summary(self) -> str:
        """One line for the panel: the version and its held-out check."""
        return f"{self.model.ref}: {self.heldout_check()}"


def parse_adapt_result(result: Mapping[str, Any]) -> AdaptOutput:
    """Parse an `adapt` result; EngineError if it does not name the new model version."""
    model = result.get("model")
    if not isinstance(model, Mapping) or not model.get("name") or not model.get("path"):
        raise EngineError("The engine's adapt result names no model version (expected \"model\" "
                          "with \"name\", \"version\" and \"path\"). Update the ARCOSegment "
                          "engine and the extension together.")
    heldout = result.get("heldout") or {}
    outputs = result.get("outputs") or []

    def number(value, kind=float):
        return None if value is None else kind(value)
    return AdaptOutput(model=ModelEntry.from_dict(model),
                       heldout_slice=number(heldout.get("slice"), int),
                       parent_dice=number(heldout.get("parent_dice")),
                       adapted_dice=number(heldout.get("adapted_dice")),
                       activated=bool(heldout.get("activated", False)),
                       axis=int(result.get("axis") or 0),
                       suggested_slices=[int(s) for s in result.get("suggested_slices", [])],
                       labels=Path(outputs[0]["labels"]) if outputs else None,
                       iterations=int(result.get("iterations") or 0),
                       seconds=float(result.get("seconds") or 0.0),
                       copy_dice=number(heldout.get("copy_dice")),
                       output_dice=number(heldout.get("output_dice")),
                       fusion_weight=number(heldout.get("fusion_weight")))


class EngineJob(Generic[T]):
    """An engine run plus the step that turns its result into something useful."""

    def __init__(self, command: Sequence[str], finish: Callable[[dict[str, Any]], T], *,
                 env: Mapping[str, str] | None = None, work_dir: str | Path | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None,
                 log: Callable[[str], None] | None = None,
                 on_done: Callable[[T | None, Exception | None], None] | None = None,
                 grace_seconds: float = 5.0,
                 runner: Callable[[EngineCallbacks], EngineProcess] | None = None) -> None:
        """`runner(callbacks)`, if given, makes the process (e.g. a run in the warm worker,
        ARCOSegmentLib.worker); else `command` runs as a one-shot child process."""
        self._finish_result = finish
        self._work_dir = Path(work_dir) if work_dir else None
        self._on_done = on_done
        self._value: T | None = None
        self._error: Exception | None = None
        self._started = False
        callbacks = EngineCallbacks(progress=progress, log=log, result=self._on_result,
                                    error=self._on_error)
        self.process = runner(callbacks) if runner is not None else EngineProcess(
            command, env=env, grace_seconds=grace_seconds, callbacks=callbacks)

    def start(self) -> EngineJob[T]:
        """Start the engine (non-blocking); EngineError (and no `on_done`) if it cannot start."""
        self._started = True
        try:
            self.process.start()
        except EngineError:
            self._remove_work_dir()
            raise
        return self

    def poll(self) -> bool:
        """Dispatch events (and finish when the engine is done); True while still running."""
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> T:
        """Run to completion (starting if needed); return the finished value or raise."""
        if not self.started:
            self.start()
        try:
            self.process.wait(timeout)
        except EngineError:
            pass  # _on_error has recorded it
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def cancel(self) -> None:
        """Stop the engine and its child processes."""
        self.process.cancel()

    @property
    def started(self) -> bool:
        """True once `start` has run."""
        return self._started

    @property
    def finished(self) -> bool:
        """True once the job is over (result processed or failed)."""
        return self.process.finished

    def _on_result(self, result: dict[str, Any]) -> None:
        try:
            self._value = self._finish_result(result)
        except Exception as err:  # reading the output failed: report it like an engine error
            self._error = err
        self._done()

    def _on_error(self, error: EngineError) -> None:
        self._error = error
        self._done()

    def _done(self) -> None:
        self._remove_work_dir()
        if self._on_done is not None:
            self._on_done(self._value, self._error)

    def _remove_work_dir(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
