"""Adapt's training run: partial labels, the propagation prior and the held-out slice, within
the time budget."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from arcoseg.adapt import schedule
from arcoseg.adapt.inputs import AnnotatedImage, on_plan, preprocess_annotated
from arcoseg.adapt.request import AdaptRequest
from arcoseg.adapt.annotations import rejoin
from arcoseg.adapt.heldout import HeldOutSlice
from arcoseg.adapt.parent import Parent
from arcoseg.adapt.prior import PriorMethod, propagate, scale_note
from arcoseg.data.preprocess import Plan, PreprocessedCase
from arcoseg.device import resolve_device
from arcoseg.networks.model import NetworkConfig
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg.train.trainer import RunData, Trainer, extra_unlabelled, without_label
from arcoseg.data.sampling import PatchSampler, SliceSampler


def prior_sampler(request: AdaptRequest, items: list[AnnotatedImage],
                  labelled: list[PreprocessedCase], plan: Plan, patch: tuple[int, ...],
                  seed: int) -> SliceSampler | PatchSampler | None:
    """Batches of propagated slices (or patches) with their weights as the last image channel;
    None when the prior is off or reaches no slice."""
    if not request.prior.active:
        return None
    cases = []
    for item, case in zip(items, labelled):
        ann = item.annotations
        labels, weights = propagate(ann.labels, ann.axis, ann.slices, request.prior)
        if weights.any():
            channels = np.concatenate([case.image, on_plan(weights, item, plan, False)[None]])
            cases.append(PreprocessedCase(case.case_id, channels,
                                          on_plan(labels, item, plan, is_label=True,
                                                  drawing=False),  # dense: nothing to widen
                                          case.spacing_zyx))
    if not cases:
        return None
    cls = SliceSampler if plan.dims == 2 else PatchSampler
    return cls(cases, patch, request.prior.batch, seed=seed)


def train_adapted(request: AdaptRequest, parent: Parent, items: list[AnnotatedImage], plan: Plan,
                  reporter: Reporter, stop: Callable[[], bool], work: Path
                  ) -> tuple[Trainer, HeldOutSlice | None]:
    """Run the ARCO training with partial labels inside the time budget; the held-out slice
    (if any) joins training for the end of the schedule (`adapt.heldout`)."""
    scratch = parent.model is None
    optimizer, lr = schedule.optimizer(request.optimizer, request.lr)
    options = TrainOptions(dims=plan.dims, method=request.method, sampler=request.sampler,
                           optimizer=optimizer, lr=lr,
                           iterations=request.iterations, batch=4 if plan.dims == 2 else 2,
                           patch=plan.patch_size,
                           device=request.device, amp=request.amp, seed=request.seed,
                           budget_seconds=request.budget, early_stop=request.early_stop,
                           warmup_fraction=schedule.warmup_fraction(request.warmup, scratch,
                                                                    request.method),
                           jitter=request.jitter,
                           log_every=5, val_every=10**9, checkpoint_every=10**9)
    labelled = [preprocess_annotated(item, plan) for item in items]
    unlabelled = [without_label(c) for c in labelled]
    unlabelled += extra_unlabelled(request.unlabelled, plan, reporter)
    data = RunData(plan, parent.class_names, parent.class_values, 1, labelled, unlabelled, [],
                   provenance={"parent": str(parent.ref) if parent.ref else None})
    network = (NetworkConfig.from_dict(parent.metadata.network) if parent.metadata else None)
    weights = parent.model.state_dict() if parent.model is not None else None
    held = held_out_hook(items[0], labelled, plan, resolve_device(request.device))
    trainer = Trainer(data, options, work, reporter, should_stop=stop, init_weights=weights,
                      network=network, hooks=[held] if held else [])
    sampler = (prior_sampler(request, items, labelled, plan, tuple(options.patch),
                             request.seed + 2) if request.prior.active else None)
    if sampler is not None:
        trainer.method = PriorMethod(trainer.method, sampler, request.prior, trainer.device)
    reporter.log(scale_note(request.prior) if sampler is not None else "no propagation prior")
    trainer.run()
    return trainer, held


def held_out_hook(item: AnnotatedImage, labelled: list[PreprocessedCase], plan: Plan,
                  device: torch.device) -> HeldOutSlice | None:
    """The held-out slice's training hook for `item` (the first image; `labelled[0]` is it on
    the plan's grid), or None when no slice is held out."""
    if item.held_out is None:
        return None
    drawn = rejoin(item.annotations, item.held_out)
    with_slice = replace(labelled[0], label=on_plan(drawn.labels, item, plan, is_label=True))
    return HeldOutSlice(labelled[0].image, on_plan(item.held_out.labels, item, plan, True),
                        [with_slice, *labelled[1:]], plan, device)
