"""The training schedule of an adaptation: what differs between starting from scratch and
fine-tuning a parent model (measured in training/benchmarks/RESULTS.md, issues 5 and 13)."""

from __future__ import annotations

SCRATCH_WARMUP = 0.5  # fraction of an adaptation from scratch that is supervised only
# AdamW fits in the few hundred iterations a short budget allows, where SGD at the paper's rate
# does not: from scratch, and from a parent too (ACDC k = 3 from the 3-patient base, 4 volumes:
# model alone 81.3 vs 74.5 with SGD, fused output 83.8 vs 82.4, better on all 4; RESULTS.md,
# session 10). Not measured for a 3D parent.
OPTIMIZER = "adamw"
DEFAULT_LR = {"adamw": 1e-3, "sgd": 0.01}


def warmup_fraction(requested: float | None, from_scratch: bool, method: str) -> float:
    """The requested supervised warm-up fraction, or its default: half the schedule from scratch
    (a random teacher's pseudo-labels wreck it), none from a parent or for supervised-only
    fine-tunes, which have no semi-supervised part."""
    if requested is not None:
        return requested
    return SCRATCH_WARMUP if from_scratch and method != "supervised" else 0.0


def optimizer(requested: str | None, lr: float | None) -> tuple[str, float]:
    """(optimiser name, initial learning rate): the requested ones, else AdamW and its rate."""
    name = requested or OPTIMIZER
    return name, lr if lr is not None else DEFAULT_LR[name]
