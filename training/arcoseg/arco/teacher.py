"""The mean teacher: an exponential moving average (EMA) of the student, and the ramp-up weight.

BatchNorm buffers: they are averaged with the same momentum as the weights: the teacher's weights
are an average of recent student weights, so the matching statistics are the average of the
student's recent statistics. Integer buffers (`num_batches_tracked`) are copied. The teacher is
in eval mode (no dropout), and validation and export use these running statistics.

Pseudo-labels, though, come from a pass that normalises by the batch's own statistics
(`batch_statistics`, ARCO's default `teacher_norm="batch"`, as in SSL4MIS where the EMA model is
never put in eval mode). With running statistics the pseudo-labels on ACDC shrank the predicted
foreground to a third within 200 iterations, even from a 44 %-Dice teacher, and the student
followed (the "collapse" in benchmarks/RESULTS.md); with batch statistics the predicted/true
foreground ratio stayed between 0.8 and 1.3 (training/benchmarks/experiments/mt_collapse.py).

Hand-written rather than `torch.optim.swa_utils.AveragedModel`: that wrapper renames every state
dict key (`module.`), and averages integer buffers too; here the teacher stays a plain copy of the
student that validation and model export use as is.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of `student` in eval mode (no dropout, BatchNorm running statistics)."""
    teacher = copy.deepcopy(student)
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher.eval()


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float = 0.99) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameters and float buffers."""
    weight = 1.0 - momentum
    torch._foreach_lerp_(list(teacher.parameters()),
                         [p.detach() for p in student.parameters()], weight)
    for mine, theirs in zip(teacher.buffers(), student.buffers()):
        if mine.is_floating_point():
            mine.lerp_(theirs, weight)
        else:
            mine.copy_(theirs)


def sigmoid_rampup(iteration: int, length: int) -> float:
    """exp(-5 (1 - t/L)^2) for t < L, then 1 (Laine & Aila); 1 when `length` <= 0."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(iteration, 0), length) / length
    return math.exp(-5.0 * phase * phase)


@contextmanager
def batch_statistics(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Run `model` with its BatchNorm layers normalising by the statistics of the batch it sees,
    leaving the running statistics untouched (momentum 0); everything else stays in eval mode."""
    norms = [m for m in model.modules()
             if enabled and isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.momentum, m.num_batches_tracked) for m in norms]
    for m in norms:
        m.train()
        m.momentum = 0.0
        m.num_batches_tracked = m.num_batches_tracked.clone()
    try:
        yield model
    finally:
        for m, (training, momentum, tracked) in zip(norms, saved):
            m.train(training)
            m.momentum, m.num_batches_tracked = momentum, tracked
