"""`ArcoConfig`: the settings of the semi-supervised methods (mean teacher, ARCO), with the
paper's defaults where the spec gives them (ARCO_SPEC.md sections 2 and 4; You et al., NeurIPS
2023), each checked at construction (ArcosegError naming the setting)."""

from __future__ import annotations

from dataclasses import dataclass

from arcoseg.arco.nn_loss import QUEUE_SIZE, TOP_K
from arcoseg.arco.samplers import SAMPLERS
from arcoseg.arco.cutmix import MIX_MODES
from arcoseg.constants import TEACHER_NORMS
from arcoseg.data.intensity import DEFAULT_JITTER, check_jitter
from arcoseg.errors import ArcosegError, check_choice

SEMI_SUPERVISED_METHODS = ("mean_teacher", "arco")


@dataclass
class ArcoConfig:
    """Settings of the semi-supervised methods (defaults: the paper's)."""

    method: str = "arco"  # 'mean_teacher' | 'arco'
    sampler: str = "sg"  # 'ns' | 'sg' | 'sag'
    grid: int = 4  # SG/SAG grid cells per axis
    ema: float = 0.99  # teacher momentum
    teacher_norm: str = "batch"  # BatchNorm of the pseudo-labelling pass: 'batch' | 'running'
    conf_threshold: float = 0.97  # ReCo weighting of L_unsup; negatives have p(c) below it
    lambda_u: float = 1.0
    lambda_c: float = 0.01
    lambda_nn: float = 1.0  # 0 disables the nearest-neighbour loss
    warmup_iters: int = 0  # supervised-only iterations first; the teacher then starts as a copy
    warmup_fraction: float = 0.0  # or this fraction of the (possibly budget-shortened) schedule
    # sigmoid ramp-up of the unlabelled terms after the warm-up; 0 = none; None = a fifth of the
    # rest of the schedule, following it when a time budget shortens it
    rampup_iters: int | None = 0
    anchors: int = 256  # anchors per class
    negatives: int = 512  # negatives per anchor
    tau: float = 0.5
    bank_size: int = 30000
    background_bank_size: int = 50000
    bank_push: int = 1024  # negatives pushed per class per iteration
    anchor_threshold: float = 0.3  # anchors need teacher p(c) above this
    reliable_percent: float = 20.0  # alpha_0: lowest-entropy % of unannotated pixels kept
    nn_queue: int = QUEUE_SIZE
    nn_topk: int = TOP_K
    mix: str = "unlabelled"  # CutMix mode: 'unlabelled' (spec), 'bidirectional' (BCP), 'none'
    cutmix_area: float = 0.5
    # intensity jitter of the student's view of the unlabelled images (data.intensity); 0 = none
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        for setting, value, choices in (("semi-supervised method", self.method,
                                         SEMI_SUPERVISED_METHODS),
                                        ("mixing mode", self.mix, MIX_MODES),
                                        ("teacher normalisation", self.teacher_norm, TEACHER_NORMS),
                                        ("sampler", self.sampler, SAMPLERS)):
            check_choice(value, choices, setting)
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ArcosegError(f"Warm-up fraction must be in [0, 1), got {self.warmup_fraction}.")
        check_jitter(self.jitter)
        if not 0.0 <= self.ema < 1.0:
            raise ArcosegError(f"EMA momentum must be in [0, 1), got {self.ema}.")
        counts = {"grid": self.grid, "anchors": self.anchors, "negatives": self.negatives,
                  "bank_size": self.bank_size, "background_bank_size": self.background_bank_size,
                  "bank_push": self.bank_push, "nn_queue": self.nn_queue, "nn_topk": self.nn_topk}
        for name, value in counts.items():
            if value < 1:
                raise ArcosegError(f"Setting {name} must be at least 1, got {value}.")
        if self.tau <= 0 or not 0 < self.cutmix_area <= 1:
            raise ArcosegError(f"Need tau > 0 and 0 < cutmix_area <= 1, got tau={self.tau}, "
                               f"cutmix_area={self.cutmix_area}.")
