"""2.5D input: a 2D model's slice comes with its neighbours as extra channels, stacked once on
the preprocessed volume and recorded in the plan."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.data.context import with_context_slices
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import preprocess_image
from arcoseg.errors import InputError, ModelFileError


def test_each_slice_gets_its_neighbours_as_channels_and_zeros_beyond_the_ends():
    volume = np.arange(2 * 4 * 3 * 3, dtype=np.float32).reshape(2, 4, 3, 3)  # (C, z, y, x)
    stacked = with_context_slices(volume, 1)
    assert stacked.shape == (6, 4, 3, 3) and stacked.dtype == np.float32
    for c in range(2):
        np.testing.assert_array_equal(stacked[3 * c + 1], volume[c])  # the slice itself
        np.testing.assert_array_equal(stacked[3 * c, 1:], volume[c, :-1])  # the one below
        np.testing.assert_array_equal(stacked[3 * c + 2, :-1], volume[c, 1:])  # the one above
        assert not stacked[3 * c, 0].any() and not stacked[3 * c + 2, -1].any()
    assert with_context_slices(volume, 0) is volume


def _plan(**kw) -> Plan:
    base = dict(dims=2, target_spacing=(1.0, 1.0, 1.0), normalization="zscore",
                label_values=[0, 1], patch_size=(16, 16))
    return Plan(**(base | kw))


def test_the_plan_records_the_context_and_the_networks_input_channels():
    plan = _plan(context_slices=2)
    assert plan.input_channels(1) == 5 and plan.image_channels(5) == 1
    assert Plan.from_dict(plan.to_dict()) == plan
    old = plan.to_dict()
    del old["context_slices"]  # a model file written before 2.5D input existed
    assert Plan.from_dict(old).context_slices == 0
    with pytest.raises(ModelFileError, match="4 input channel.*5 slice"):
        plan.image_channels(4)


@pytest.mark.parametrize("kw", [dict(context_slices=4), dict(context_slices=-1),
                                dict(dims=3, patch_size=(16, 16, 16), context_slices=1)])
def test_impossible_contexts_are_refused(kw):
    with pytest.raises(InputError, match="context_slices must be 0..3"):
        _plan(**kw).validate()


def test_preprocessing_stacks_the_neighbours_after_normalising():
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(5, 2, (6, 16, 16)))
    plain, grid = preprocess_image([image], _plan())
    stacked, same_grid = preprocess_image([image], _plan(context_slices=1))
    assert stacked.shape == (3, 6, 16, 16) and same_grid == grid
    np.testing.assert_allclose(stacked[1], plain[0])
    np.testing.assert_allclose(stacked[0, 1:], plain[0, :-1])


@pytest.mark.parametrize("depth, k", [(2, 3), (1, 3), (2, 2), (3, 3)])
def test_neighbours_further_than_the_volume_reaches_are_zeros(depth, k):
    """The tester's bug: 2 slices with 3 neighbours each side crashed train, segment, adapt."""
    volume = np.random.default_rng(0).normal(size=(1, depth, 4, 4)).astype(np.float32)
    stacked = with_context_slices(volume, k)
    assert stacked.shape == (2 * k + 1, depth, 4, 4)
    np.testing.assert_array_equal(stacked[k], volume[0])
    for j in range(2 * k + 1):
        for z in range(depth):
            source = z + j - k
            expected = volume[0, source] if 0 <= source < depth else 0
            np.testing.assert_array_equal(stacked[j, z], expected)


@pytest.mark.parametrize("value", ["1", 1.0, True, None])
def test_a_context_that_is_not_a_whole_number_is_refused(value):
    data = _plan().to_dict() | {"context_slices": value}
    with pytest.raises(ModelFileError, match="context_slices must be a whole number"):
        Plan.from_dict(data)


def test_a_model_file_whose_input_channels_do_not_fit_its_context_is_refused():
    from arcoseg.model_metadata import ModelMetadata, make_classes
    from arcoseg.networks import NetworkConfig

    config = NetworkConfig(arch="unet2d", in_channels=3, num_classes=2)
    ModelMetadata(network=config, classes=make_classes(["background", "a"]),
                  plan=_plan(context_slices=1).to_dict())  # 3 = 1 channel x 3 slices
    with pytest.raises(ModelFileError, match="3 input channel.*5 slice"):
        ModelMetadata(network=config, classes=make_classes(["background", "a"]),
                      plan=_plan(context_slices=2).to_dict())
