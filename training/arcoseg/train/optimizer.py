"""The optimiser of a training run (the poly learning-rate decay is the trainer's, for both)."""

from __future__ import annotations

from typing import Iterable

import torch

from arcoseg.constants import OPTIMIZERS
from arcoseg.errors import check_choice

WEIGHT_DECAY = 1e-4


def make_optimizer(name: str, parameters: Iterable[torch.nn.Parameter],
                   lr: float) -> torch.optim.Optimizer:
    """'sgd': SGD with Nesterov momentum 0.9 (the paper's, spec section 2 step 5); 'adamw':
    AdamW (Loshchilov & Hutter, ICLR 2019), which fits a network from scratch in far fewer
    iterations than SGD at the paper's rate: what Adapt from scratch has within a short budget
    (training/benchmarks/RESULTS.md). Raises ArcosegError for another name."""
    check_choice(name, OPTIMIZERS, "optimizer")
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=WEIGHT_DECAY)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=WEIGHT_DECAY,
                           nesterov=True)
