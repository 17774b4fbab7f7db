"""Specification of arcoseg.data.sampling: 2D slice and 3D patch batch samplers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.data.sampling import PatchSampler, SliceSampler
from arcoseg.errors import InputError

SPACING = (1.0, 1.0, 1.0)


def _random_case(case_id: str = "c", shape=(6, 20, 18), seed: int = 0) -> PreprocessedCase:
    """Image channel 0 equals the label, so any misalignment after augmentation shows."""
    label = np.random.default_rng(seed).integers(0, 4, shape).astype(np.uint8)
    return PreprocessedCase(case_id, label[None].astype(np.float32), label, SPACING)


def _blob_case(shape=(6, 32, 32)) -> PreprocessedCase:
    """Mostly background with one small foreground cube."""
    label = np.zeros(shape, np.uint8)
    label[2:4, 5:8, 20:23] = 1
    return PreprocessedCase("blob", label[None].astype(np.float32), label, SPACING)


def _batches_equal(a, b) -> bool:
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (16, 12)),
                                            (PatchSampler, (4, 16, 12))])
def test_batches_have_the_documented_shapes_and_types(sampler, patch):
    images, labels = sampler([_random_case()], patch, batch_size=3, seed=0).sample()
    assert images.shape == (3, 1, *patch) and images.dtype == torch.float32
    assert labels.shape == (3, *patch) and labels.dtype == torch.int64


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (16, 16)), (SliceSampler, (16, 12)),
                                            (SliceSampler, (24, 24)), (PatchSampler, (4, 16, 12)),
                                            (PatchSampler, (8, 24, 24))])
def test_augmented_labels_stay_aligned_with_their_images(sampler, patch):
    cases = [_random_case("a", seed=1), _random_case("b", (5, 14, 22), seed=2)]
    s = sampler(cases, patch, batch_size=8, seed=3, augment=True)
    for _ in range(5):
        images, labels = s.sample()
        assert torch.equal(images[:, 0].long(), labels)


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (20, 18)), (PatchSampler, (6, 20, 18))])
def test_augmentation_rotates_and_flips(sampler, patch):
    """With the patch covering the whole volume only augmentation can change a sample."""
    case = _random_case(shape=(1, 20, 18)) if sampler is SliceSampler else _random_case()

    def distinct(augment: bool) -> int:
        s = sampler([case], patch, batch_size=16, seed=0, augment=augment, fg_fraction=0.0)
        return len({bytes(x.numpy()) for x in s.sample()[1]})

    assert distinct(False) == 1 and distinct(True) >= 4


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (16, 16)), (PatchSampler, (4, 8, 8))])
def test_same_seed_gives_the_same_batches(sampler, patch):
    cases = [_random_case("a", seed=1), _random_case("b", seed=2)]
    a = sampler(cases, patch, batch_size=4, seed=7)
    b = sampler(cases, patch, batch_size=4, seed=7)
    c = sampler(cases, patch, batch_size=4, seed=8)
    first_a, first_b, first_c = a.sample(), b.sample(), c.sample()
    assert _batches_equal(first_a, first_b) and not _batches_equal(first_a, first_c)


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (16, 16)), (PatchSampler, (4, 8, 8))])
def test_state_round_trip_through_json_resumes_exactly(sampler, patch):
    cases = [_random_case("a", seed=1), _random_case("b", seed=2)]
    original = sampler(cases, patch, batch_size=4, seed=7)
    original.sample()
    state = json.loads(json.dumps(original.state_dict()))
    expected = [original.sample() for _ in range(3)]
    resumed = sampler(cases, patch, batch_size=4, seed=999)
    resumed.load_state_dict(state)
    assert all(_batches_equal(e, resumed.sample()) for e in expected)


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (16, 16)), (PatchSampler, (4, 8, 8))])
def test_jitter_changes_each_images_contrast_and_brightness_only(sampler, patch):
    cases = [_random_case("a", seed=1), _random_case("b", seed=2)]
    plain, _ = sampler(cases, patch, batch_size=4, seed=7).sample()
    s = sampler(cases, patch, batch_size=4, seed=7, jitter=0.5)
    jittered, _ = s.sample()
    assert not torch.equal(jittered, plain)
    for x, y in zip(plain.flatten(1), jittered.flatten(1)):  # y = a x + b per image
        a = (y[x == 3].mean() - y[x == 0].mean()) / 3
        assert 0.5 <= float(a) <= 1.5 and torch.allclose(y, a * x + (y - a * x).mean(), atol=1e-5)
    resumed = sampler(cases, patch, batch_size=4, seed=0, jitter=0.5)
    resumed.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert _batches_equal(s.sample(), resumed.sample())


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (16, 16)), (PatchSampler, (4, 8, 8))])
def test_unlabelled_cases_give_all_ignore_labels(sampler, patch):
    case = _random_case()
    unlabelled = PreprocessedCase("u", case.image, None, SPACING)
    _, labels = sampler([unlabelled], patch, batch_size=4, seed=0).sample()
    assert (labels == IGNORE_LABEL).all()


def test_slices_without_annotation_are_never_drawn():
    shape = (6, 10, 10)
    image = np.broadcast_to(np.arange(shape[0], dtype=np.float32)[:, None, None], shape)
    label = np.full(shape, IGNORE_LABEL, np.uint8)
    label[3, 2:5, 2:5] = 0  # only slice 3 has annotated voxels (background here)
    case = PreprocessedCase("partial", image[None].copy(), label, SPACING)
    s = SliceSampler([case], (8, 8), batch_size=16, seed=0)
    for _ in range(5):
        images, labels = s.sample()
        assert (images == 3).all()
        assert ((labels != IGNORE_LABEL).flatten(1).any(dim=1)).all()


def test_labelled_cases_without_any_annotation_cannot_be_sampled():
    label = np.full((2, 4, 4), IGNORE_LABEL, np.uint8)
    case = PreprocessedCase("empty", np.zeros((1, 2, 4, 4), np.float32), label, SPACING)
    with pytest.raises(InputError, match="annotated voxel"):
        SliceSampler([case], (4, 4), batch_size=1, seed=0)
    with pytest.raises(InputError, match="No cases"):
        PatchSampler([], (2, 4, 4), batch_size=1, seed=0)


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (8, 8)), (PatchSampler, (2, 8, 8))])
def test_foreground_oversampling_raises_the_foreground_fraction(sampler, patch):
    def fraction_with_foreground(fg_fraction: float) -> float:
        s = sampler([_blob_case()], patch, batch_size=64, seed=0, fg_fraction=fg_fraction)
        labels = s.sample()[1]
        return float((labels > 0).flatten(1).any(dim=1).float().mean())

    assert fraction_with_foreground(0.0) < 0.3
    assert fraction_with_foreground(1.0) == 1.0


@pytest.mark.parametrize("sampler, patch", [(SliceSampler, (12, 10)), (PatchSampler, (4, 12, 10))])
def test_small_volumes_are_padded_with_zero_image_and_background(sampler, patch):
    label = np.ones((2, 6, 5), np.uint8)
    case = PreprocessedCase("small", np.full((1, 2, 6, 5), 5.0, np.float32), label, SPACING)
    images, labels = sampler([case], patch, batch_size=2, seed=0).sample()
    assert images.shape[2:] == patch and labels.shape[1:] == patch
    inside = labels == 1
    assert int(inside[0].sum()) == (6 * 5 if sampler is SliceSampler else 2 * 6 * 5)
    assert (images[:, 0][inside] == 5).all() and (images[:, 0][~inside] == 0).all()


def test_slices_can_be_taken_along_another_axis():
    shape = (4, 6, 8)
    image = np.broadcast_to(np.arange(shape[2], dtype=np.float32), shape)[None].copy()
    case = PreprocessedCase("x", image, np.zeros(shape, np.uint8), SPACING)
    images, _ = SliceSampler([case], (4, 6), batch_size=8, seed=0, axis=2).sample()
    assert images.shape == (8, 1, 4, 6)
    assert all(torch.unique(img).numel() == 1 for img in images)  # one x position per slice
