"""One semi-supervised training iteration: mean teacher, and ARCO on top of it (spec section 2).

Per iteration (`SemiSupervisedMethod.training_step`):
0. during an optional supervised warm-up (`warmup_iters`, or `warmup_fraction` of a schedule
   that a time budget may still shorten) only L_sup on the labelled batch, and the teacher is a
   copy of the student, so the semi-supervised terms start from a teacher that has learnt
   something (off by default: it made no clear difference on ACDC from 3 patients; Adapt from
   scratch uses it, RESULTS.md);
1. the teacher predicts the raw unlabelled batch: pseudo-labels (argmax) and confidences (max p);
   for ARCO one forward of the whole pool [labelled, raw unlabelled] gives also the labelled
   images' probabilities and every image's embeddings, which step 3 mixes;
2. strong view: CutMix (`cutmix.mixing_plan`: inside the unlabelled batch as specified, or
   bidirectional between labelled and unlabelled images); images, annotations, pseudo-labels and
   confidences share the boxes; then an intensity jitter of the unlabelled images (`jitter`);
3. one student forward on labelled + strong unlabelled images. For ARCO the teacher's view of
   those inputs (spec step 3: its probabilities, pooled to the embeddings' grid, and its
   embeddings) is the pool's output of step 1 mixed by the same plan (`MixPlan.apply`, which
   resamples the box to the embeddings' grid as the labels are), not a second forward of the
   mixed images: the teacher forwards 2 B images, not 3 B, the bulk of ARCO's extra cost over
   mean teacher on the CPU (benchmarks/RESULTS.md, issue 16). It differs from a true forward in
   two ways, both accepted: (a) within a receptive field of a box edge a true forward would see
   both images, the mixed output sees one image's context; the spec already builds the
   pseudo-labels and confidences this way (steps 1-2), so the labels, probabilities and
   embeddings of the contrastive loss now come from the same teacher output, where before they
   disagreed near the edges; (b) with the jitter on, the teacher sees the un-jittered images,
   the weak view of the mean-teacher convention (and of step 1), the student the strong view.
   With `teacher_norm="batch"` (default) the teacher's forward normalises by the statistics of
   the batch it sees (the pool for ARCO, the raw unlabelled images for mean teacher); with
   "running", by the running statistics;
4. L = L_sup + ramp(t) * (lambda_u L_unsup + lambda_c L_contrast + lambda_nn L_nn). L_nn pulls
   the student's pooled embedding of each strong unlabelled image towards its nearest entries of
   a FIFO of teacher embeddings of the raw unlabelled images (pushed after the loss is taken).
Partial labels: voxels annotated in any image (labelled or unlabelled; value != IGNORE_LABEL)
are supervised by L_sup and replace the pseudo-labels; unannotated voxels of the labelled
images get no L_sup/L_unsup term (they enter the contrastive loss with the teacher's label).

After the optimiser step, `after_optimizer_step` moves the teacher towards the student (EMA with
the usual warm-up min(1 - 1/(n + 1), ema), so the early teacher is not stuck at the random init).

`eval_model` is the teacher: an EMA of the student is a temporal ensemble of its weights, it is
what produced the pseudo-labels the student was trained to match, and it is usually at least as
accurate and less noisy from one validation to the next, so we validate and ship it.

Reproducibility: the method's random draws (CutMix, samplers, jitter) use its own generator on
the training device, seeded from the global torch RNG at construction (so `torch.manual_seed`
fixes them) plus the DDP rank (each rank mixes and samples its own shard differently), and saved
in `state_dict` with the teacher, memory bank and queue.

Host synchronisation: none. Every shape is fixed (see `contrastive`), the diagnostics stay device
tensors, and the only reads the training loop makes are its logging every few iterations.
Distributed (DDP): `share` (train.distributed) concatenates a tensor over the ranks; the
negatives pushed into the memory bank and the image embeddings pushed into the queue go through
it, so every rank holds the same bank and queue (the teacher is the same because the student's
weights are).
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from arcoseg.arco.config import ArcoConfig
from arcoseg.arco.contrastive import PixelSelection, contrastive_loss, select_pixels
from arcoseg.arco.cutmix import MixPlan, mixing_plan, nearest_resize
from arcoseg.arco.memory_bank import ClassMemoryBank, RingBuffer
from arcoseg.arco.nn_loss import image_embeddings, nearest_neighbour_loss
from arcoseg.arco.teacher import batch_statistics, ema_update, make_teacher, sigmoid_rampup
from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.intensity import intensity_jitter
from arcoseg.errors import ArcosegError
from arcoseg.train.losses import supervised_loss

Batch = tuple[torch.Tensor, torch.Tensor | None]


def unsupervised_loss(logits: torch.Tensor, pseudo: torch.Tensor, confidence: torch.Tensor,
                      valid: torch.Tensor, threshold: float = 0.97) -> torch.Tensor:
    """Per-pixel CE against pseudo-labels, each image weighted by the fraction of its valid
    pixels with confidence >= `threshold` (ReCo), averaged over the valid pixels.
    """
    ce = F.cross_entropy(logits.float(), pseudo.long(), reduction="none")
    confident = (confidence >= threshold) & valid
    weight = confident.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
    weighted = ce * weight.view(-1, *([1] * (ce.ndim - 1))) * valid
    return weighted.sum() / valid.sum().clamp(min=1)


def _pool_probabilities(probs: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    pool = F.adaptive_avg_pool2d if probs.ndim == 4 else F.adaptive_avg_pool3d
    return pool(probs, size)


class _TeacherView(NamedTuple):
    """What the teacher says about the student's inputs x_all (B = n_l + n_u images)."""

    pseudo: torch.Tensor  # argmax of its probabilities, mixed (B, *spatial); mean teacher: 0
    # on the labelled images' pixels, which it never reads
    confidence: torch.Tensor  # max probability, mixed alike (B, *spatial)
    has_pseudo: torch.Tensor  # bool (B, *spatial): where the pixel comes from an unlabelled image
    probabilities: torch.Tensor | None  # (B, K, *spatial/stride), pooled then mixed (ARCO only)
    embeddings: torch.Tensor | None  # (B, D, *spatial/stride), mixed (ARCO only)
    raw_embeddings: torch.Tensor | None  # (n_u, D, *spatial/stride) of the raw unlabelled images


class SemiSupervisedMethod:
    """Mean teacher or ARCO around a student with `forward` / `forward_train` (see module doc)."""

    def __init__(self, student: nn.Module, config: ArcoConfig, num_classes: int,
                 spatial_dims: int, device: torch.device | str, *, rank: int = 0,
                 share: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.config, self.num_classes, self.spatial_dims = config, num_classes, spatial_dims
        self.device, self.share = torch.device(device), share
        self.teacher = make_teacher(student)
        self.bank = ClassMemoryBank(num_classes, None, config.bank_size,
                                    config.background_bank_size, self.device)
        self.queue = RingBuffer(config.nn_queue, self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(torch.randint(2 ** 62, (1,))) + rank)
        self.ema_updates = 0
        self._warmup_end: int | None = None  # iteration the warm-up ended at; None: not yet

    @property
    def _contrast(self) -> bool:
        return self.config.method == "arco" and self.config.lambda_c > 0

    @property
    def _neighbours(self) -> bool:
        return self.config.method == "arco" and self.config.lambda_nn > 0

    def training_step(self, student: nn.Module, labelled: Batch, unlabelled: Batch | None,
                      iteration: int, max_iterations: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Total loss (with gradient) of one iteration and its terms/diagnostics (detached)."""
        cfg = self.config
        if not self.uses_unlabelled(iteration, max_iterations):  # supervised warm-up
            loss_sup = supervised_loss(student(labelled[0]), labelled[1])
            return loss_sup, {"loss": loss_sup.detach(), "loss_sup": loss_sup.detach(),
                              "rampup": 0.0}
        if unlabelled is None:
            raise ArcosegError(f"Method {self.config.method!r} needs unlabelled images; add "
                               "unlabelled cases or train with --method supervised.")
        (x_l, y_l), (x_u, y_u) = labelled, unlabelled
        n_l = x_l.shape[0]
        plan, x_all, annotations = self._student_inputs(x_l, y_l, x_u, y_u)
        annotated = annotations != IGNORE_LABEL
        with torch.no_grad(), batch_statistics(self.teacher, cfg.teacher_norm == "batch"):
            teacher = self._teacher_pass(x_l, x_u, plan)
            start = time.perf_counter()
            selection = (self._select(teacher, annotations, annotated,
                                      iteration / max(1, max_iterations))
                         if self._contrast else None)
            seconds = time.perf_counter() - start

        if self._contrast or self._neighbours:
            logits, z_s = student.forward_train(x_all)
        else:
            logits, z_s = student(x_all), None
        loss_sup = supervised_loss(logits, annotations)
        loss_unsup = unsupervised_loss(logits, teacher.pseudo, teacher.confidence,
                                       teacher.has_pseudo & ~annotated, cfg.conf_threshold)
        terms: dict[str, Any] = {}
        loss_contrast = loss_nn = loss_sup.new_zeros(())
        if selection is not None:
            start = time.perf_counter()
            loss_contrast, diag = contrastive_loss(
                z_s, teacher.embeddings, selection, self.bank, cfg.sampler, self.generator,
                grid=cfg.grid, anchors=cfg.anchors, negatives=cfg.negatives, tau=cfg.tau,
                push=cfg.bank_push, share=self.share)
            terms.update({f"anchors/{c}": n for c, n in enumerate(diag["anchors"].unbind())})
            terms["valid_classes"] = diag["valid_classes"]
            terms["time_contrast"] = seconds + time.perf_counter() - start
        if self._neighbours:
            loss_nn = nearest_neighbour_loss(image_embeddings(z_s[n_l:]), self.queue.get(),
                                             cfg.nn_topk)
            pushed = image_embeddings(teacher.raw_embeddings)
            self.queue.push(pushed if self.share is None else self.share(pushed[None])[0])
        warmed = self._warmup_end or 0
        length = (cfg.rampup_iters if cfg.rampup_iters is not None
                  else max(1, (max_iterations - warmed) // 5))
        ramp = sigmoid_rampup(iteration - warmed, length)
        loss = loss_sup + ramp * (cfg.lambda_u * loss_unsup + cfg.lambda_c * loss_contrast
                                  + cfg.lambda_nn * loss_nn)
        terms.update({"loss": loss.detach(), "loss_sup": loss_sup.detach(),
                      "loss_unsup": loss_unsup.detach(), "loss_contrast": loss_contrast.detach(),
                      "loss_nn": loss_nn.detach(), "rampup": ramp})
        return loss, terms

    def uses_unlabelled(self, iteration: int, max_iterations: int) -> bool:
        """False during the supervised warm-up. Once over, the warm-up stays over even if a
        re-estimated time budget lengthens the schedule (the teacher must not be reset)."""
        if self._warmup_end is None:
            end = max(self.config.warmup_iters,
                      int(self.config.warmup_fraction * max_iterations))
            if iteration < end:
                return False
            self._warmup_end = end
        return True

    def _student_inputs(self, x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor,
                        y_u: torch.Tensor | None
                        ) -> tuple[MixPlan, torch.Tensor, torch.Tensor]:
        """The mixing plan, the mixed images (strong view) and their mixed annotations."""
        n_l = x_l.shape[0]
        if y_u is None:
            y_u = torch.full((x_u.shape[0], *x_u.shape[2:]), IGNORE_LABEL, dtype=y_l.dtype,
                             device=x_u.device)
        plan = mixing_plan(n_l, x_u.shape[0], tuple(x_u.shape[2:]), self.config.mix,
                           self.generator, self.config.cutmix_area, device=x_u.device)
        x_all = plan.apply(torch.cat([x_l, x_u]))
        if self.config.jitter > 0:
            x_all = torch.cat([x_all[:n_l], intensity_jitter(x_all[n_l:], self.generator,
                                                             self.config.jitter)])
        return plan, x_all, plan.apply(torch.cat([y_l, y_u.to(y_l.dtype)]))

    def _teacher_pass(self, x_l: torch.Tensor, x_u: torch.Tensor, plan: MixPlan) -> _TeacherView:
        """One teacher forward: the raw unlabelled images (mean teacher) or the pool
        [x_l, x_u] (ARCO); its outputs mixed by `plan` stand for the student's inputs (steps
        1-3 of the module doc, with the approximations it states)."""
        n_l = x_l.shape[0]
        if self._contrast or self._neighbours:
            logits, embeddings = self.teacher.forward_train(torch.cat([x_l, x_u]))
            if embeddings is None:
                raise ArcosegError("Method 'arco' needs a network with a representation head "
                                   "(head_dim set); use --method mean_teacher otherwise.")
        else:
            logits, embeddings = self.teacher(x_u), None
        probs = torch.softmax(logits.float(), dim=1)
        confidence, pseudo = probs.max(dim=1)
        missing = n_l + x_u.shape[0] - logits.shape[0]  # mean teacher: the labelled images

        def mixed(values: torch.Tensor, fill: float | bool) -> torch.Tensor:
            """`values` of the pool (`fill` for the images the teacher did not see), mixed."""
            unseen = torch.full((missing, *values.shape[1:]), fill, dtype=values.dtype,
                                device=values.device)
            return plan.apply(torch.cat([unseen, values]))

        from_unlabelled = torch.arange(n_l + x_u.shape[0], device=x_u.device) >= n_l
        view = (mixed(pseudo, 0), mixed(confidence, 0.0),
                plan.apply(from_unlabelled.view(-1, *[1] * (x_u.ndim - 2))
                           .expand(-1, *x_u.shape[2:])))
        if embeddings is None:
            return _TeacherView(*view, None, None, None)
        grid = tuple(embeddings.shape[2:])
        return _TeacherView(*view, plan.apply(_pool_probabilities(probs, grid)),
                            plan.apply(embeddings), embeddings[n_l:])

    def _select(self, teacher: _TeacherView, annotations: torch.Tensor,
                annotated: torch.Tensor, progress: float) -> PixelSelection:
        """Teacher-side pixel selection at the embedding resolution. Labels: annotations where
        annotated, else the teacher's mixed argmax (its pseudo-labels of the unlabelled images,
        its guess on the unannotated parts of labelled images)."""
        labels = torch.where(annotated, annotations, teacher.pseudo.to(annotations.dtype))
        grid = tuple(teacher.embeddings.shape[2:])
        return select_pixels(teacher.embeddings, teacher.probabilities,
                             nearest_resize(labels, grid), nearest_resize(annotated, grid),
                             progress, self.config.conf_threshold, self.config.anchor_threshold,
                             self.config.reliable_percent)

    def after_optimizer_step(self, student: nn.Module) -> None:
        """EMA update of the teacher (momentum warm-up min(1 - 1/(n + 1), ema)); during the
        supervised warm-up the teacher is a copy of the student."""
        self.ema_updates += 1
        momentum = min(self.config.ema, 1.0 - 1.0 / (self.ema_updates + 1))
        ema_update(self.teacher, student, 0.0 if self._warmup_end is None else momentum)

    def eval_model(self) -> nn.Module:
        """The teacher: the network to validate and ship (see module docstring)."""
        return self.teacher

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat dict of tensors: teacher weights, memory bank, queue, RNG state, EMA counter."""
        state = {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}
        state.update({f"bank.{k}": v for k, v in self.bank.state_dict().items()})
        state.update({f"queue.{k}": v for k, v in self.queue.state_dict().items()})
        state["generator"] = self.generator.get_state()
        state["ema_updates"] = torch.tensor(self.ema_updates)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `state_dict` saved (tensors may be on the CPU)."""
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

        self.teacher.load_state_dict(part("teacher."))
        self.bank.load_state_dict(part("bank."))
        self.queue.load_state_dict(part("queue."))
        self.generator.set_state(state["generator"].cpu())
        self.ema_updates = int(state["ema_updates"])
