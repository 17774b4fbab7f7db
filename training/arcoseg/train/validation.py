"""Validation during training: mean Dice per class on preprocessed validation cases."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import compute_dice

from arcoseg.data.preprocess import Plan, PreprocessedCase
from arcoseg.inference import predict_probabilities
from arcoseg.networks.model import SegmentationModel


def validate(model: SegmentationModel, cases: list[PreprocessedCase], plan: Plan,
             class_names: list[str], device: torch.device) -> dict[str, float]:
    """`{"val_dice": mean over classes, "val_dice/<class>": mean over cases}` (NaN-aware)."""
    num_classes = len(class_names)
    per_case = []
    for case in cases:
        probs = predict_probabilities(model, case.image, plan, device)
        pred = probs.argmax(dim=0)
        gt = torch.from_numpy(case.label.astype(np.int64))
        per_case.append(compute_dice(_onehot(pred, num_classes), _onehot(gt, num_classes),
                                     include_background=False, ignore_empty=True)[0])
    scores = torch.stack(per_case).numpy()  # (cases, classes-1), NaN where absent in both
    with np.errstate(invalid="ignore"):
        per_class = np.nanmean(scores, axis=0) if len(scores) else np.full(num_classes - 1, np.nan)
    result = {f"val_dice/{name}": float(v) for name, v in zip(class_names[1:], per_class)}
    result["val_dice"] = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0
    return result


def _onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).movedim(-1, 0)[None].float()
