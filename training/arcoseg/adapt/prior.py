"""Propagation prior: what the drawing already implies about the slices nobody drew.

The drawn labels are carried to the other slices (`baselines.propagate_labels`: the nearest
copy, or interpolation between the outermost drawn slices and the copy beyond them) and
trained on as extra, down-weighted targets: weight
`strength * exp(-(d - 1) / scale)` for a slice `d` slices from the nearest drawn slice (0 on the
drawn slices themselves, which the supervised loss already covers), times a schedule factor that
falls linearly from 1 to 0 over the first `decay` fraction of training — so the model starts from
what the drawing implies and the semi-supervised terms and the image take over later.

`PriorMethod` wraps any training method (`train.methods.Method`) and adds the priors' weighted
cross-entropy on batches of propagated slices (and of the parent's prediction,
`adapt.parent_prior`) to its loss. The per-voxel weights travel with
the images as one extra channel through the ordinary samplers (so cropping, padding and
flipping treat them exactly like the image; padding gives weight 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from arcoseg.adapt.annotations import along
from arcoseg.adapt.baselines import check_interpolation, propagate_labels, slice_distance
from arcoseg.constants import DEFAULT_PRIOR, IGNORE_LABEL, PARENT_PRIOR, PRIOR_MODES
from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.errors import check_choice
from arcoseg.ranges import NONNEG, NONNEG_INT, POSITIVE, POSITIVE_INT, SHARE
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


@dataclass
class ParentPriorSettings:
    """How strongly the parent's prediction is kept far from the drawing (`adapt.parent_prior`;
    here, beside `PriorSettings`, so that `AdaptRequest` can hold it without importing the
    inputs)."""

    strength: float = PARENT_PRIOR  # weight far from the drawing, for a parent the drawing agrees
    # with entirely (the weight is scaled by the parent's Dice on the drawn slices)
    # slices next to a drawn one where the drawing alone rules (0 weight): on volumes with a few
    # thick slices (ACDC: 8-10) every slice is that near and the parent adds nothing there
    margin: int = 2
    scale: float = 3.0  # slices: beyond the margin the weight reaches 63 % of its top in `scale`

    def __post_init__(self) -> None:
        NONNEG.check(self.strength, "Parent prior strength")
        NONNEG_INT.check(self.margin, "Parent prior margin (slices)")
        POSITIVE.check(self.scale, "Parent prior scale (slices)")

    @property
    def active(self) -> bool:
        """Whether the prior adds anything."""
        return self.strength > 0


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
    weights = per_voxel(slice_weights(drawn.shape[axis], slices, settings), drawn.shape, axis)
    labels[weights == 0] = IGNORE_LABEL
    labels[along(axis, slices)] = IGNORE_LABEL
    return labels, weights


def per_voxel(per_slice: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """A (z, y, x) float32 map of `shape` holding `per_slice[i]` on every voxel of slice i
    along `axis`."""
    view = [1, 1, 1]
    view[axis] = -1
    return np.ascontiguousarray(np.broadcast_to(per_slice.reshape(view), shape), np.float32)


def weighted_case(case: PreprocessedCase, weights: np.ndarray, labels: np.ndarray
                  ) -> PreprocessedCase:
    """`case` (image (C, z, y, x) on the plan's grid) with a prior's per-voxel `weights`
    (z, y, x) as an extra last image channel and the prior's `labels` (z, y, x): the layout
    the samplers carry and `PriorMethod` reads (images[:, :-1], images[:, -1])."""
    return PreprocessedCase(case.case_id, np.concatenate([case.image, weights[None]]), labels,
                            case.spacing_zyx)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                           weights: torch.Tensor) -> torch.Tensor:
    """Mean over voxels of weight * CE; voxels labelled IGNORE_LABEL count with weight 0.

    logits (B, K, *spatial), labels (B, *spatial) int, weights (B, *spatial) float.
    """
    ce = F.cross_entropy(logits.float(), labels.long(), ignore_index=IGNORE_LABEL,
                         reduction="none")
    return (ce * weights.float()).mean()


@dataclass
class PriorTerm:
    """One prior `PriorMethod` trains on: batches from `sampler` (images with the per-voxel
    weights as their last channel, labels), times `factor(iteration, total)`; logged as
    loss_<name>."""

    name: str
    sampler: Any
    factor: Callable[[int, int], float]


class PriorMethod:
    """A training method plus weighted cross-entropy on the batches of one or more priors
    (the propagation prior here, the parent prior in `adapt.parent_prior`).

    The priors' batches go through the student in one forward pass; each term's loss is its
    own weighted mean, so adding a term leaves the others' scale unchanged. The wrapped
    method's loss, terms and teacher are unchanged otherwise.
    """

    def __init__(self, inner: Method, terms: list[PriorTerm], device: torch.device) -> None:
        self.inner, self.terms, self.device = inner, terms, device

    def training_step(self, student: torch.nn.Module, labelled: Batch, unlabelled: Batch | None,
                      iteration: int, max_iterations: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The wrapped method's step, plus factor * each prior's loss while its factor is > 0."""
        loss, terms = self.inner.training_step(student, labelled, unlabelled, iteration,
                                               max_iterations)
        active = [(term, factor) for term in self.terms
                  if (factor := term.factor(iteration, max_iterations)) > 0]
        if not active:
            return loss, terms
        batches = [term.sampler.sample() for term, _ in active]
        images = torch.cat([b[0] for b in batches]).to(self.device)
        labels = torch.cat([b[1] for b in batches]).to(self.device)
        logits = student(images[:, :-1])
        terms, start = dict(terms), 0
        for (term, factor), (batch_images, _) in zip(active, batches):
            part = slice(start, start + len(batch_images))
            value = weighted_cross_entropy(logits[part], labels[part], images[part, -1])
            loss = loss + factor * value
            terms[f"loss_{term.name}"], terms[f"{term.name}_factor"] = value.detach(), factor
            start = part.stop
        return loss, terms

    def uses_unlabelled(self, iteration: int, max_iterations: int) -> bool:
        return self.inner.uses_unlabelled(iteration, max_iterations)

    def after_optimizer_step(self, student: torch.nn.Module) -> None:
        self.inner.after_optimizer_step(student)

    def eval_model(self) -> torch.nn.Module:
        return self.inner.eval_model()

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(),
                "samplers": [term.sampler.state_dict() for term in self.terms]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        for term, sampler_state in zip(self.terms, state["samplers"]):
            term.sampler.load_state_dict(sampler_state)


def propagation_term(sampler: Any, settings: PriorSettings) -> PriorTerm:
    """The propagation prior's term: it fades out over `settings.decay` of the schedule."""
    return PriorTerm("prior", sampler,
                     lambda iteration, total: schedule_factor(iteration, total, settings.decay))


def scale_note(settings: PriorSettings) -> str:
    """One line for the log: what the prior does."""
    if not settings.active:
        return "no propagation prior"
    reach = settings.scale * math.log(settings.strength / MIN_WEIGHT) + 1
    return (f"propagation prior: {settings.mode}, weight {settings.strength:g} next to a drawn "
            f"slice, reaching {reach:.0f} slices, fading out over {settings.decay:.0%} of training")
