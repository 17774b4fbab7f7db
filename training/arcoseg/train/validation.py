"""Validation during training: mean Dice per class on preprocessed validation cases."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics import compute_dice

from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.inference import predict_probabilities
from arcoseg.networks.model import SegmentationModel


def class_dice(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> np.ndarray:
    """Dice per foreground class over annotated voxels (gt != IGNORE_LABEL); NaN for a class
    absent from the ground truth (MONAI's ignore_empty)."""
    valid = gt != IGNORE_LABEL
    p, g = pred[valid][None].long(), gt[valid][None].long()
    return compute_dice(_onehot(p, num_classes), _onehot(g, num_classes),
                        include_background=False, ignore_empty=True)[0].numpy()


def validate(model: SegmentationModel, cases: list[PreprocessedCase], plan: Plan,
             class_names: list[str], device: torch.device) -> dict[str, float]:
    """`{"val_dice": mean over classes, "val_dice/<class>": mean over cases}` (NaN-aware)."""
    num_classes = len(class_names)
    scores = np.stack([
        class_dice(predict_probabilities(model, case.image, plan, device).argmax(dim=0),
                   torch.from_numpy(case.label), num_classes) for case in cases])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: class never present
        per_class = np.nanmean(scores, axis=0)
    result = {f"val_dice/{name}": float(v) for name, v in zip(class_names[1:], per_class)}
    result["val_dice"] = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0
    return result


def _onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, *spatial) integer labels → (B, K, *spatial) float one-hot."""
    return torch.nn.functional.one_hot(labels, num_classes).movedim(-1, 1).float()
