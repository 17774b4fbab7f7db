"""Adapt's held-out slice while training: the early-stop signal, then one more training slice.

Adapt holds one drawn slice out of training (`annotations.hold_out`) to check the adapted model
against what the user had before (`adapt.check`). While it is held out, the model is scored on
it every SCORE_EVERY iterations, and the early stop waits while that score still improves
(`train.convergence`; issue 13: the early-stop rule should not stop while the held-out signal
improves). At RELEASE_AT of the schedule, or earlier once training has converged, the model as
it is then is kept for the check, and the slice joins the training labels for the rest of the
schedule (after a convergence: TAIL times the iterations so far, within the budget): the user
drew it, so the final model learns from every drawn slice.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from arcoseg.adapt.check import slice_dice
from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.inference import predict_probabilities
from arcoseg.networks.model import SegmentationModel
from arcoseg.train.trainer import BUDGET_WINDOW, Trainer

SCORE_EVERY = 25  # iterations between held-out scores (a multiple of BUDGET_WINDOW)
RELEASE_AT = 0.75  # fraction of the schedule after which the held-out slice trains
TAIL = 0.25  # after a convergence: iterations with the slice, as a fraction of those before


class HeldOutSlice:
    """A Trainer hook (`Trainer(hooks=...)`, one process): scores the held-out slice, feeds the
    early stop, and at the release puts the slice into the labelled data.

    `image` (C, z, y, x) and `labels` (z, y, x; the held-out slice's classes, IGNORE_LABEL
    elsewhere) are on the plan's grid; `labelled` is the labelled data with the slice included.
    """

    def __init__(self, image: np.ndarray, labels: np.ndarray, labelled: list[PreprocessedCase],
                 plan: Plan, device: torch.device) -> None:
        self.image, self.labels = _around_held_out(image, labels, plan)
        self.labelled, self.plan, self.device = labelled, plan, device
        self.scores: list[tuple[int, float]] = []  # (iteration, mean foreground Dice)
        self.snapshot: dict[str, torch.Tensor] | None = None  # the checked model's weights
        self.released_at: int | None = None

    def score(self, model: SegmentationModel) -> float | None:
        """Mean foreground Dice (0..1) of `model` on the held-out slice (None: no class)."""
        if self.labels.size == 0:
            return None
        probabilities = predict_probabilities(model, self.image, self.plan, self.device)
        return slice_dice(probabilities.argmax(dim=0).numpy(), self.labels,
                          probabilities.shape[0])

    def __call__(self, trainer: Trainer) -> None:
        if self.snapshot is not None:
            return
        it, opts = trainer.state.iteration, trainer.options
        if it % SCORE_EVERY == 0:
            score = self.score(trainer.method.eval_model())
            if score is not None:
                self.scores.append((it, score))
                trainer.convergence.add_score(score)
        if it >= opts.iterations:  # the budget ends the run here: the slice never trains, so
            return  # the final model is the one to check (`checked_model`)
        converged = opts.early_stop and trainer.convergence.converged(it, opts.iterations)
        if converged or it >= RELEASE_AT * opts.iterations:
            self._release(trainer, converged)

    def _release(self, trainer: Trainer, converged: bool) -> None:
        it = self.released_at = trainer.state.iteration
        self.snapshot = {k: v.detach().clone()
                         for k, v in trainer.method.eval_model().state_dict().items()}
        trainer.use_labelled(self.labelled)
        trainer.options.early_stop = False  # the release has decided where training ends
        if converged:
            trainer.max_iterations = min(trainer.max_iterations,
                                         it + max(BUDGET_WINDOW, round(TAIL * it)))
            trainer.options.iterations = min(trainer.options.iterations, trainer.max_iterations)
        shown = f", held-out Dice {self.scores[-1][1]:.3f}" if self.scores else ""
        trainer.reporter.log(f"Iteration {it}{shown}: the held-out slice joins training "
                             f"({'converged; ' if converged else ''}"
                             f"{trainer.options.iterations - it} more iterations)")

    def checked_model(self, final: SegmentationModel) -> SegmentationModel:
        """The model the held-out check scores: `final` with the weights it had when the
        slice joined training (`final` itself if it never did)."""
        if self.snapshot is None:
            return final
        model = copy.deepcopy(final)
        model.load_state_dict(self.snapshot)
        return model


def _around_held_out(image: np.ndarray, labels: np.ndarray, plan: Plan
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The z range that holds the held-out voxels (2D: those slices; 3D: with half a patch of
    context on each side), so that scoring costs a few slices or windows, not the volume."""
    z = np.flatnonzero((labels != IGNORE_LABEL).any(axis=(1, 2)))
    if z.size == 0:
        return image[:, :0], labels[:0]
    margin = 0 if plan.dims == 2 else plan.patch_size[0] // 2
    lo, hi = max(0, z[0] - margin), min(labels.shape[0], z[-1] + 1 + margin)
    return image[:, lo:hi], labels[lo:hi]
