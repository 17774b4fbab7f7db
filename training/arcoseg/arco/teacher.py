"""The mean teacher: an exponential moving average (EMA) of the student, and the ramp-up weight.

BatchNorm buffers: the teacher always runs in eval mode, so its running mean/variance are what
normalise its activations. They are averaged with the same momentum as the weights: the teacher's
weights are an average of recent student weights, so the matching statistics are the average of
the student's recent statistics; copying the student's latest buffers would pair averaged weights
with the newest statistics. Integer buffers (`num_batches_tracked`) are copied.

Hand-written rather than `torch.optim.swa_utils.AveragedModel`: that wrapper renames every state
dict key (`module.`), and averages integer buffers too; here the teacher stays a plain copy of the
student that validation and model export use as is.
"""

from __future__ import annotations

import copy
import math

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
