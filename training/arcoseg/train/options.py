"""Training options: one dataclass shared by the CLI, the benchmarks and Adapt."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from arcoseg.arco.cutmix import MIX_MODES
from arcoseg.arco.samplers import SAMPLERS
from arcoseg.constants import INPUT_DIVISOR, METHODS, OPTIMIZERS, TEACHER_NORMS
from arcoseg.data.intensity import DEFAULT_JITTER, check_jitter
from arcoseg.errors import ArcosegError, check_choice
from arcoseg.ranges import (CONTEXT_SLICES, FRACTION, NONNEG, NONNEG_INT, POSITIVE, POSITIVE_INT,
                            SEED, TRAIN_BATCH, Range)

DEFAULT_PATCH = {2: (128, 128), 3: (48, 64, 64)}

# the ranges of the numeric settings (`arcoseg train` checks its options with the same rules)
_RANGES: dict[str, Range] = {
    "iterations": POSITIVE_INT, "batch": TRAIN_BATCH, "unlabelled_batch": TRAIN_BATCH,
    "labelled": POSITIVE_INT, "lr": POSITIVE, "seed": SEED, "val_every": POSITIVE_INT,
    "checkpoint_every": POSITIVE_INT, "log_every": POSITIVE_INT, "lambda_u": NONNEG,
    "lambda_c": NONNEG, "lambda_nn": NONNEG, "rampup": NONNEG_INT, "warmup": NONNEG_INT,
    "warmup_fraction": FRACTION, "grid": POSITIVE_INT, "budget_seconds": POSITIVE,
    "context_slices": CONTEXT_SLICES}


@dataclass
class TrainOptions:
    """Everything that defines a training run (saved with the model as provenance)."""

    dims: int = 2
    method: str = "supervised"
    sampler: str = "sg"
    labelled: int | None = None
    labelled_list: Path | None = None
    unlabelled: list[Path] = field(default_factory=list)
    iterations: int = 2000
    batch: int = 4
    unlabelled_batch: int | None = None
    patch: tuple[int, ...] | None = None
    spacing: tuple[float, float, float] | None = None
    context_slices: int = 0  # 2D: neighbouring slices on each side as input channels (2.5D)
    optimizer: str = "sgd"  # 'sgd' (the paper's) | 'adamw' (train.optimizer)
    lr: float = 0.01
    seed: int = 0
    device: str = "auto"
    # mixed precision (bf16 autocast) on CUDA: off until measured faster with an unchanged Dice
    # on a GPU; channels-last: None = on the CPU only, where it was measured faster
    # (train.precision); sync_bn: SyncBatchNorm under torchrun (CUDA)
    amp: bool = False
    channels_last: bool | None = None
    sync_bn: bool = False
    val_every: int = 200
    checkpoint_every: int = 500
    log_every: int = 10
    lambda_u: float = 1.0
    lambda_c: float = 0.01
    lambda_nn: float = 1.0
    rampup: int | None = None  # None: a fifth of the schedule after the warm-up (ArcoConfig)
    warmup: int = 0  # supervised-only iterations before the semi-supervised terms start
    warmup_fraction: float = 0.0  # or this fraction of the schedule (follows a time budget)
    mix: str = "unlabelled"  # CutMix mode of the semi-supervised methods (arco.cutmix)
    teacher_norm: str = "batch"  # BatchNorm of the teacher's pseudo-labelling pass (arco.teacher)
    jitter: float = DEFAULT_JITTER  # intensity jitter of all the student sees (data.intensity)
    grid: int = 4
    cache_dir: Path | None = None
    budget_seconds: float | None = None  # shorten the schedule to fit this training time
    early_stop: bool = False  # end once the supervised loss stops improving

    def __post_init__(self) -> None:
        if self.dims not in (2, 3):
            raise ArcosegError(f"--dims must be 2 or 3, not {self.dims}.")
        for setting, value, choices in (("--method", self.method, METHODS),
                                        ("--sampler", self.sampler, SAMPLERS),
                                        ("--mix", self.mix, MIX_MODES),
                                        ("--teacher-norm", self.teacher_norm, TEACHER_NORMS),
                                        ("--optimizer", self.optimizer, OPTIMIZERS)):
            check_choice(value, choices, setting)
        check_jitter(self.jitter)
        for name, rule in _RANGES.items():
            if getattr(self, name) is not None:
                rule.check(getattr(self, name), f"--{name.replace('_', '-')}")
        self.patch = tuple(self.patch) if self.patch else DEFAULT_PATCH[self.dims]
        if len(self.patch) != self.dims or any(p % INPUT_DIVISOR or p <= 0 for p in self.patch):
            raise ArcosegError(f"--patch needs {self.dims} sizes, each a positive multiple of "
                               f"{INPUT_DIVISOR} ({'y x' if self.dims == 2 else 'z y x'}); "
                               f"got {self.patch}.")
        if self.context_slices and self.dims != 2:
            raise ArcosegError("--context-slices goes with 2D models (--dims 2) only: a 3D model "
                               "sees the neighbouring slices in its patch already.")

    @property
    def semi_supervised(self) -> bool:
        """Whether unlabelled data and a teacher take part."""
        return self.method != "supervised"

    def to_dict(self) -> dict:
        """JSON-safe form (paths as strings)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
            elif isinstance(value, list):
                out[key] = [str(v) for v in value]
            elif isinstance(value, tuple):
                out[key] = list(value)
        return out
