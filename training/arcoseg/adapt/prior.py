"""Propagation prior: what the drawing already implies about the slices nobody drew.

The drawn labels are carried to the other slices (`baselines.propagate_labels`: the nearest
copy, or interpolation between the outermost drawn slices and the copy beyond them) and
trained on as extra, down-weighted targets: weight
`strength * exp(-(d - 1) / scale)` for a slice `d` slices from the nearest drawn slice (0 on the
drawn slices themselves, which the supervised loss already covers), times a schedule factor that
falls linearly from 1 to 0 over the first `decay` fraction of training — so the model starts from
what the drawing implies and the semi-supervised terms and the image take over later.

`PriorMethod` wraps any training method (`train.methods.Method`) and adds the prior's weighted
cross-entropy on a batch of propagated slices to its loss. The per-voxel weights travel with
the images as one extra channel through the ordinary samplers (so cropping, padding and
flipping treat them exactly like the image; padding gives weight 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from arcoseg.adapt.annotations import along
from arcoseg.adapt.baselines import check_interpolation, propagate_labels, slice_distance
from arcoseg.constants import DEFAULT_PRIOR, IGNORE_LABEL, PRIOR_MODES
from arcoseg.errors import check_choice
from arcoseg.ranges import NONNEG, POSITIVE, POSITIVE_INT, SHARE
from arcoseg.train.methods import Batch, Method

MIN_WEIGHT = 0.02  # slices weighted less than this are left out of the prior (unannotated)


@dataclass
class PriorSettings:
    """How strongly and how long the propagated labels are trained on."""

    mode: str = DEFAULT_PRIOR  # 'none' | 'nearest' | 'interpolate'
    strength: float = 1.0  # weight of a slice next to a drawn one, at the start of training
    scale: float = 2.0  # slices: the weight falls by 1/e every `scale` slices further away
    decay: float = 0.5  # fraction of the schedule over which the weight falls to 0 (linearly)
    batch: int = 2  # propagated slices (or patches) per iteration

    def __post_init__(self) -> None:
        check_choice(self.mode, PRIOR_MODES, "prior mode")
        if self.mode == "interpolate":
            check_interpolation()
        NONNEG.check(self.strength, "Prior strength")
        POSITIVE.check(self.scale, "Prior scale (slices)")
        SHARE.check(self.decay, "Prior decay (part of the schedule)")
        POSITIVE_INT.check(self.batch, "Prior batch")

    @property
    def active(self) -> bool:
        """Whether the prior adds anything."""
        return self.mode != "none" and self.strength > 0


def slice_weights(size: int, slices: list[int], settings: PriorSettings) -> np.ndarray:
    """(size,) prior weight of each slice index: 0 on drawn slices, `strength` next to one,
    falling by 1/e every `scale` slices, 0 where it would fall below MIN_WEIGHT."""
    distance = slice_distance(size, slices).astype(np.float64)
    weights = settings.strength * np.exp(-(distance - 1) / settings.scale)
    weights[distance == 0] = 0.0
    weights[weights < MIN_WEIGHT] = 0.0
    return weights.astype(np.float32)


def schedule_factor(iteration: int, total: int, decay: float) -> float:
    """1 at the start, falling linearly to 0 at `decay` of the `total` iterations."""
    return max(0.0, 1.0 - iteration / max(1.0, decay * total))


def propagate(drawn: np.ndarray, axis: int, slices: list[int], settings: PriorSettings
              ) -> tuple[np.ndarray, np.ndarray]:
    """The prior of one image: (labels, weights), both (z, y, x) like `drawn`.

    labels: the propagated classes (uint8; `baselines.propagate_labels` by `settings.mode`),
    IGNORE_LABEL where the weight is 0 (drawn slices and slices too far away); weights: float32
    per voxel, constant within a slice. Raises ArcosegError for mode 'none' (nothing to
    propagate) or as `propagate_labels` does.
    """
    labels = propagate_labels(drawn, axis, slices, settings.mode)
    per_slice = slice_weights(drawn.shape[axis], slices, settings)
    shape = [1, 1, 1]
    shape[axis] = -1
    weights = np.broadcast_to(per_slice.reshape(shape), drawn.shape).astype(np.float32)
    labels[weights == 0] = IGNORE_LABEL
    labels[along(axis, slices)] = IGNORE_LABEL
    return labels, np.ascontiguousarray(weights)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """Mean over voxels of weight * CE; voxels labelled IGNORE_LABEL count with weight 0.

    logits (B, K, *spatial), labels (B, *spatial) int, weights (B, *spatial) float.
    """
    ce = F.cross_entropy(logits.float(), labels.long(), ignore_index=IGNORE_LABEL,
                         reduction="none")
    return (ce * weights.float()).mean()


class PriorMethod:
    """A training method plus the propagation prior's weighted cross-entropy.

    `sampler.sample()` gives (images with the weights as their last channel, prior labels);
    the wrapped method's loss, terms and teacher are unchanged otherwise.
    """

    def __init__(self, inner: Method, sampler: Any, settings: PriorSettings,
                 device: torch.device) -> None:
        self.inner, self.sampler, self.settings, self.device = inner, sampler, settings, device

    def training_step(self, student: torch.nn.Module, labelled: Batch, unlabelled: Batch | None,
                      iteration: int, max_iterations: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The wrapped method's step, plus factor * the prior loss while the factor is > 0."""
        loss, terms = self.inner.training_step(student, labelled, unlabelled, iteration,
                                               max_iterations)
        factor = schedule_factor(iteration, max_iterations, self.settings.decay)
        if factor > 0:
            images, labels = (t.to(self.device) for t in self.sampler.sample())
            prior = weighted_cross_entropy(student(images[:, :-1]), labels, images[:, -1])
            loss = loss + factor * prior
            terms = {**terms, "loss_prior": prior.detach(), "prior_factor": factor}
        return loss, terms

    def uses_unlabelled(self, iteration: int, max_iterations: int) -> bool:
        return self.inner.uses_unlabelled(iteration, max_iterations)

    def after_optimizer_step(self, student: torch.nn.Module) -> None:
        self.inner.after_optimizer_step(student)

    def eval_model(self) -> torch.nn.Module:
        return self.inner.eval_model()

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.sampler.load_state_dict(state["sampler"])


def scale_note(settings: PriorSettings) -> str:
    """One line for the log: what the prior does."""
    if not settings.active:
        return "no propagation prior"
    reach = settings.scale * math.log(settings.strength / MIN_WEIGHT) + 1
    return (f"propagation prior: {settings.mode}, weight {settings.strength:g} next to a drawn "
            f"slice, reaching {reach:.0f} slices, fading out over {settings.decay:.0%} of training")
