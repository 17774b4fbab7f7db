"""Supervised segmentation loss with partial-label support (CE + soft Dice)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from arcoseg.constants import IGNORE_LABEL

# MONAI's DiceLoss has no ignore index, so unannotated voxels are zeroed in both the
# prediction and the one-hot target before it sees them (they then add nothing to any sum).
_dice = DiceLoss(include_background=True, to_onehot_y=False, softmax=False, reduction="mean",
                 smooth_nr=1e-5, smooth_dr=1e-5, batch=True)


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor,
                    ignore_index: int = IGNORE_LABEL) -> torch.Tensor:
    """CE + soft Dice (softmax, one-hot incl. background) over annotated voxels only.

    logits: (B, K, *spatial); labels: (B, *spatial) integer, `ignore_index` = unannotated.
    Returns 0 (with a gradient path) when no voxel is annotated. No host synchronisation.
    """
    valid = labels != ignore_index
    ce = F.cross_entropy(logits.float(), labels.long(), ignore_index=ignore_index,
                         reduction="sum") / valid.sum().clamp(min=1)
    num_classes = logits.shape[1]
    mask = valid.unsqueeze(1).to(logits.dtype)
    probs = torch.softmax(logits.float(), dim=1) * mask
    safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
    # a comparison rather than F.one_hot, which reads the labels' range on the host (CPU)
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, *[1] * (labels.ndim - 1))
    onehot = (safe.unsqueeze(1) == classes).to(probs.dtype) * mask
    return ce + _dice(probs, onehot)
