"""The training schedule of an adaptation: what differs between starting from scratch and
fine-tuning a parent model (measured in training/benchmarks/RESULTS.md, issues 5 and 13)."""

from __future__ import annotations

SCRATCH_WARMUP = 0.5  # fraction of an adaptation from scratch that is supervised only
# From scratch AdamW fits in the few hundred iterations a short budget allows, where SGD at the
# paper's rate does not; a parent keeps the paper's SGD (fine-tuning was measured with it).
SCRATCH_OPTIMIZER, PARENT_OPTIMIZER = "adamw", "sgd"
DEFAULT_LR = {"adamw": 1e-3, "sgd": 0.01}


def warmup_fraction(requested: float | None, from_scratch: bool, method: str) -> float:
    """The requested supervised warm-up fraction, or its default: half the schedule from scratch
    (a random teacher's pseudo-labels wreck it), none from a parent or for supervised-only
    fine-tunes, which have no semi-supervised part."""
    if requested is not None:
        return requested
    return SCRATCH_WARMUP if from_scratch and method != "supervised" else 0.0


def optimizer(requested: str | None, lr: float | None, from_scratch: bool) -> tuple[str, float]:
    """(optimiser name, initial learning rate): the requested ones, else the start's default."""
    name = requested or (SCRATCH_OPTIMIZER if from_scratch else PARENT_OPTIMIZER)
    return name, lr if lr is not None else DEFAULT_LR[name]
