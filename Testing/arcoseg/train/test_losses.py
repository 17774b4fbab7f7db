"""The supervised loss honours partial labels: unannotated voxels add nothing."""

import torch

from arcoseg.constants import IGNORE_LABEL
from arcoseg.train.losses import supervised_loss


def test_unannotated_voxels_get_zero_gradient():
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, :4] = IGNORE_LABEL
    supervised_loss(logits, labels).backward()
    assert logits.grad[:, :, :4].abs().sum() == 0
    assert logits.grad[:, :, 4:].abs().sum() > 0


def test_loss_ignores_what_is_written_in_unannotated_voxels():
    logits = torch.randn(1, 3, 8, 8)
    labels = torch.randint(0, 3, (1, 8, 8))
    a, b = labels.clone(), labels.clone()
    a[:, :3], b[:, :3] = IGNORE_LABEL, IGNORE_LABEL
    logits_b = logits.clone()
    logits_b[:, :, :3] = torch.randn(1, 3, 3, 8) * 10
    assert torch.allclose(supervised_loss(logits, a), supervised_loss(logits_b, b))


def test_correct_prediction_scores_lower_than_wrong():
    labels = torch.randint(0, 3, (1, 8, 8))
    good = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float() * 10
    bad = torch.roll(good, 1, dims=1)
    assert supervised_loss(good, labels) < supervised_loss(bad, labels)


def test_no_annotated_voxel_gives_zero_loss_with_gradient_path():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = supervised_loss(logits, torch.full((1, 4, 4), IGNORE_LABEL))
    loss.backward()
    assert loss.item() == 0 and logits.grad is not None
