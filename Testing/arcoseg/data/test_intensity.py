"""Intensity jitter: one random contrast and brightness per image, within the strength."""

import pytest
import torch

from arcoseg.data.intensity import check_jitter, intensity_jitter
from arcoseg.errors import ArcosegError


def test_intensity_jitter_is_a_bounded_per_image_affine_change():
    images = torch.ones(6, 1, 4, 4)
    out = intensity_jitter(images, torch.Generator().manual_seed(0), strength=0.1)
    per_image = out.flatten(1)
    assert torch.equal(per_image.min(1).values, per_image.max(1).values)
    assert bool(((out - 1).abs() <= 0.2 + 1e-6).all()) and not torch.equal(out, images)


def test_strength_zero_leaves_images_unchanged():
    images = torch.randn(3, 1, 4, 4)
    assert torch.equal(intensity_jitter(images, strength=0.0), images)


@pytest.mark.parametrize("strength", [-0.1, 1.0, 2.0])
def test_a_strength_outside_0_to_1_is_refused(strength):
    with pytest.raises(ArcosegError, match="jitter"):
        check_jitter(strength)
