"""Adapt's training run: partial labels, the priors (propagation, parent) and the held-out
slice, within the time budget."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from arcoseg.adapt import schedule
from arcoseg.adapt.inputs import AnnotatedImage, on_plan, preprocess_annotated
from arcoseg.adapt.request import AdaptRequest
from arcoseg.adapt.annotations import rejoin
from arcoseg.adapt.heldout import HeldOutSlice
from arcoseg.adapt.parent import Parent
from arcoseg.adapt.parent_prior import parent_case, parent_term
from arcoseg.adapt.prior import (PriorMethod, PriorTerm, propagate, propagation_term, scale_note,
                                 weighted_case)
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.device import resolve_device
from arcoseg.networks.model import NetworkConfig, with_default_head
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg.train.run_data import unlabelled_files
from arcoseg.train.trainer import (RunData, Trainer, extra_unlabelled, new_network,
                                   without_label)
from arcoseg.data.sampling import PatchSampler, SliceSampler

ADAPT_HEAD_STRIDE = 2  # a new representation head's grid: 1/2 of the input (`_network`)


def propagation_cases(request: AdaptRequest, items: list[AnnotatedImage],
                      labelled: list[PreprocessedCase], plan: Plan) -> list[PreprocessedCase]:
    """The propagation prior's cases (`adapt.prior`): each image with the weights as its last
    channel and the propagated labels; images the prior reaches no slice of are left out."""
    cases = []
    for item, case in zip(items, labelled):
        ann = item.annotations
        labels, weights = propagate(ann.labels, ann.axis, ann.slices, request.prior)
        if weights.any():
            cases.append(weighted_case(case, on_plan(weights, item, plan, False),
                                       on_plan(labels, item, plan, is_label=True,
                                               drawing=False)))  # dense: nothing to widen
    return cases


def parent_cases(request: AdaptRequest, parent: Parent, items: list[AnnotatedImage],
                 labelled: list[PreprocessedCase], plan: Plan, device: torch.device,
                 reporter: Reporter) -> list[PreprocessedCase]:
    """The parent prior's cases (`adapt.parent_prior`), the parent's agreement with each
    drawing logged."""
    cases = []
    model = parent.model.to(device)
    for item, case in zip(items, labelled):
        prior, trust = parent_case(model, item, case, plan, request.parent_prior, device)
        if trust is not None:
            reporter.log(f"Parent prior on {item.path.name}: the parent scores Dice {trust:.3f} "
                         f"on the drawn slices; its prediction is kept with weight up to "
                         f"{request.parent_prior.strength * trust:.2f} far from them")
        if prior is not None:
            cases.append(prior)
    return cases


def prior_terms(request: AdaptRequest, parent: Parent, items: list[AnnotatedImage],
                labelled: list[PreprocessedCase], plan: Plan, patch: tuple[int, ...],
                device: torch.device, reporter: Reporter) -> list[PriorTerm]:
    """The priors Adapt trains with beside its method: the propagation prior and, from a parent,
    the parent prior; each one that reaches no voxel is left out."""
    terms = []
    if request.prior.active:
        cases = propagation_cases(request, items, labelled, plan)
        if cases:
            terms.append(propagation_term(
                weighted_sampler(cases, plan, patch, request.prior.batch, request.seed + 2),
                request.prior))
    reporter.log(scale_note(request.prior) if terms else "no propagation prior")
    if request.parent_prior.active and parent.model is not None:
        cases = parent_cases(request, parent, items, labelled, plan, device, reporter)
        if cases:
            # as many parent slices (or patches) per iteration as the propagation prior's
            terms.append(parent_term(weighted_sampler(cases, plan, patch, request.prior.batch,
                                                      request.seed + 3)))
    return terms


def weighted_sampler(cases: list[PreprocessedCase], plan: Plan, patch: tuple[int, ...],
                     batch: int, seed: int) -> SliceSampler | PatchSampler:
    """Batches of a prior's slices (2D) or patches (3D), its weights the last image channel."""
    cls = SliceSampler if plan.dims == 2 else PatchSampler
    return cls(cases, patch, batch, seed=seed)


def _network(parent: Parent, data: RunData, options: TrainOptions) -> NetworkConfig:
    """The parent's network, or a new one; ARCO adds a head where there is none, at 1/2 of the
    input: `arcoseg train`'s 1/4 in 2D (networks.model) made Adapt no faster (its ARCO steps
    come after the supervised warm-up: 2 % more iterations in 120 s) and scored lower on 5 of
    7 volumes (benchmarks/RESULTS.md, session 15)."""
    if not parent.metadata:
        return new_network(data, options, ADAPT_HEAD_STRIDE)  # with its head for ARCO
    config = NetworkConfig.from_dict(parent.metadata.network)
    return with_default_head(config, ADAPT_HEAD_STRIDE) if options.method == "arco" else config


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
    unlabelled += extra_unlabelled(unlabelled_files(request.unlabelled), plan, reporter)
    data = RunData(plan, parent.class_names, parent.class_values, 1, labelled, unlabelled, [],
                   provenance={"parent": str(parent.ref) if parent.ref else None})
    network = _network(parent, data, options)
    weights = parent.model.state_dict() if parent.model is not None else None
    held = held_out_hook(items[0], labelled, plan, resolve_device(request.device))
    trainer = Trainer(data, options, work, reporter, should_stop=stop, init_weights=weights,
                      network=network, hooks=[held] if held else [])
    terms = prior_terms(request, parent, items, labelled, plan, tuple(options.patch),
                        trainer.device, reporter)
    if terms:
        trainer.method = PriorMethod(trainer.method, terms, trainer.device)
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
