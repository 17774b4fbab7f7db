"""The training methods behind `--method`: one interface, supervised and semi-supervised."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch

from arcoseg.networks.model import SegmentationModel
from arcoseg.train.losses import supervised_loss
from arcoseg.train.options import TrainOptions

Batch = tuple[torch.Tensor, torch.Tensor | None]


class Method(Protocol):
    """What the training loop needs from a method."""

    def training_step(self, student: SegmentationModel, labelled: Batch, unlabelled: Batch | None,
                      iteration: int, max_iterations: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Total loss (with gradient) and a dict of loss terms/diagnostics."""

    def uses_unlabelled(self, iteration: int, max_iterations: int) -> bool:
        """Whether this iteration's step takes an unlabelled batch (to skip sampling one)."""

    def after_optimizer_step(self, student: SegmentationModel) -> None:
        """Update anything that follows the student (e.g. the EMA teacher)."""

    def eval_model(self) -> SegmentationModel:
        """The network to validate and ship."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SupervisedMethod:
    """Labelled data only: CE + soft Dice over annotated voxels."""

    def __init__(self, student: SegmentationModel) -> None:
        self.student = student

    def training_step(self, student: SegmentationModel, labelled: Batch, unlabelled: Batch | None,
                      iteration: int, max_iterations: int) -> tuple[torch.Tensor, dict[str, Any]]:
        images, labels = labelled
        loss = supervised_loss(student(images), labels)
        return loss, {"loss_sup": loss.detach()}

    def uses_unlabelled(self, iteration: int, max_iterations: int) -> bool:
        return False

    def after_optimizer_step(self, student: SegmentationModel) -> None:
        pass

    def eval_model(self) -> SegmentationModel:
        return self.student

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def make_method(options: TrainOptions, student: SegmentationModel, num_classes: int,
                device: torch.device, *, rank: int = 0,
                share: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Method:
    """Build the method named by `options.method` around `student`; under DDP `rank` offsets
    its random draws and `share` gathers memory-bank entries from all ranks (arco.step)."""
    if not options.semi_supervised:
        return SupervisedMethod(student)
    from arcoseg.arco.config import ArcoConfig
    from arcoseg.arco.step import SemiSupervisedMethod

    config = ArcoConfig(method=options.method, sampler=options.sampler, grid=options.grid,
                        lambda_u=options.lambda_u, lambda_c=options.lambda_c,
                        lambda_nn=options.lambda_nn, warmup_iters=options.warmup,
                        warmup_fraction=options.warmup_fraction,
                        mix=options.mix, teacher_norm=options.teacher_norm, jitter=options.jitter,
                        rampup_iters=options.rampup)
    return SemiSupervisedMethod(student, config, num_classes=num_classes,
                                spatial_dims=options.dims, device=device, rank=rank, share=share)
