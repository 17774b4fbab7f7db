"""Segmenting with streamed argmax (issue 17 item 7): the same labels as a plain argmax."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import resample_to_reference
from arcoseg.inference import (_labels_on_input_grid, predict_probabilities, segment_channels,
                               segment_file)
from arcoseg.io.geometry import Grid, grid_difference
from arcoseg.io.images import array_to_image
from arcoseg.model_metadata import ModelMetadata, make_classes
from arcoseg.networks import NetworkConfig, build_model

MODEL_GRID = Grid((6, 5, 7), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
FINER_GRID = Grid((9, 7, 7), (0.6, 0.7, 2.0), (-0.2, -0.15, 0.0), MODEL_GRID.direction)


def _probabilities(seed: int = 0) -> np.ndarray:
    """Float16 class probabilities (3, z, y, x) on MODEL_GRID, with exact ties in slice 0."""
    rng = np.random.default_rng(seed)
    p = rng.random((3, *reversed(MODEL_GRID.size))).astype(np.float32)
    p[2, 0] = p[1, 0]  # a tie between classes 1 and 2
    p[0, 0] = p[1, 0] / 2
    return (p / p.sum(axis=0)).astype(np.float16)


def _plain_argmax(probs: np.ndarray, reference: Grid) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every class resampled and rounded to float16, stacked, argmax."""
    stacked = np.stack([sitk.GetArrayFromImage(resample_to_reference(
        array_to_image(p, MODEL_GRID, np.float32), reference)).astype(np.float16)
        for p in probs])
    return stacked.argmax(axis=0), stacked


@pytest.mark.parametrize("reference", [MODEL_GRID, FINER_GRID], ids=["model grid", "finer"])
def test_streamed_argmax_equals_the_argmax_of_all_probabilities(reference):
    probs = _probabilities()
    expected, stacked = _plain_argmax(probs, reference)
    index, kept = _labels_on_input_grid(probs, MODEL_GRID, reference, keep=True, chunk=2)
    assert index.dtype == np.uint8 and index.shape == tuple(reversed(reference.size))
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_array_equal(kept, stacked)
    assert set(np.unique(index)) == {0, 1, 2}
    unkept, none = _labels_on_input_grid(probs, MODEL_GRID, reference, keep=False, chunk=3)
    np.testing.assert_array_equal(unkept, expected)
    assert none is None


def test_a_tie_goes_to_the_lower_class_as_in_argmax():
    index, _ = _labels_on_input_grid(_probabilities(), MODEL_GRID, MODEL_GRID, keep=False)
    assert (index[0] == 1).all()  # classes 1 and 2 tie on slice 0, class 0 is lower


def _model(dims: int) -> tuple[torch.nn.Module, ModelMetadata]:
    """An untrained 3-class model whose output layer is scaled so that all classes occur."""
    torch.manual_seed(2)  # a seed under which every class occurs in every case below
    arch = "unet2d" if dims == 2 else "vnet3d"
    config = NetworkConfig(arch=arch, in_channels=1, num_classes=3,
                           features=(4, 8, 16, 32, 64), head_dim=8)
    model = build_model(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.shape[:1] == (3,):  # the output layer
                param.mul_(50) if param.ndim > 1 else param.zero_()
    patch = (16, 16) if dims == 2 else (16, 16, 16)
    plan = Plan(dims=dims, target_spacing=(2.0, 1.0, 1.0), normalization="zscore",
                label_values=[0, 3, 7], patch_size=patch)
    return model, ModelMetadata(network=config, plan=plan.to_dict(),
                                classes=make_classes(["background", "a", "b"], [0, 3, 7]))


def _image(spacing: float) -> sitk.Image:
    z, y, x = np.ogrid[:10, :24, :22]
    rng = np.random.default_rng(1)
    array = (np.sin(x / 3.0) * np.cos(y / 4.0) + z / 10 + 0.3 * rng.standard_normal((10, 24, 22)))
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((spacing, spacing, 2.0))
    image.SetOrigin((5.0, -3.0, 12.0))
    return image


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("spacing", [1.0, 0.7], ids=["model grid", "finer input"])
def test_labels_without_probabilities_equal_the_argmax_of_the_kept_probabilities(dims, spacing):
    model, metadata = _model(dims)
    cpu = torch.device("cpu")
    kept = segment_channels(model, metadata, [_image(spacing)], cpu, batch_size=3)
    channels = [_image(spacing)]
    streamed = segment_channels(model, metadata, channels, cpu, batch_size=3,
                                keep_probabilities=False, release_inputs=True)
    expected = np.asarray([0, 3, 7], np.uint8)[kept.probabilities.argmax(axis=0)]
    labels = sitk.GetArrayFromImage(streamed.labels)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(kept.labels), expected)
    assert set(np.unique(labels)) == {0, 3, 7}  # every class occurs: the test can fail
    assert streamed.probabilities is None and channels == []  # the input was released
    assert Grid.of(streamed.labels) == Grid.of(_image(spacing))


@pytest.mark.parametrize("dims", [2, 3])
def test_inference_runs_in_bfloat16_on_cpus_with_it_and_gives_the_float32_labels(dims,
                                                                                monkeypatch):
    """3D networks train in float32 on the CPU but predict in bfloat16, as 2D ones do
    (RESULTS.md, "3D inference in bfloat16": the same Dice on LA's validation volumes)."""
    import arcoseg.device
    monkeypatch.setattr(arcoseg.device, "cpu_has_native_bf16", lambda: True)
    model, metadata = _model(dims)
    plan = Plan.from_dict(metadata.plan)
    array = sitk.GetArrayFromImage(_image(1.0))[None]
    cpu = torch.device("cpu")
    exact = predict_probabilities(model, array, plan, cpu, amp=False)
    bf16 = predict_probabilities(model, array, plan, cpu, amp=True)
    assert not torch.equal(exact, bf16)  # computed in another precision ...
    assert (exact - bf16).abs().max() < 0.05  # ... to bfloat16's rounding
    assert (exact.argmax(0) == bf16.argmax(0)).float().mean() > 0.98


def test_normalised_entropy_stays_within_0_and_1_when_rounded_probabilities_sum_over_1():
    """The tester's F8: float16 probabilities of 0.3335 each gave 1.00004."""
    from arcoseg.inference import normalized_entropy

    rounded = np.full((3, 2), 0.3335, np.float16)  # sums to 1.0005
    certain = np.array([[1.0], [0.0], [0.0]], np.float16)
    assert normalized_entropy(rounded).max() == np.float32(1)
    assert normalized_entropy(certain)[0] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_voxels_beyond_the_model_grid_keep_the_prediction_next_to_them(dims):
    """The tester's edge finding: 23 x 0.7 mm = 16.1 mm rounds to 16 voxels of the model's 1 mm,
    whose last centre lies short of the input's last one; there every class probability was
    0 (label forced to background, entropy 0). Now the nearest model voxel's values."""
    model, metadata = _model(dims)
    image = _image(0.7)[:23]  # x: 23 voxels at 0.7 mm
    seg = segment_channels(model, metadata, [image], torch.device("cpu"), batch_size=3)
    np.testing.assert_allclose(seg.probabilities.astype(np.float32).sum(axis=0), 1, atol=5e-3)
    assert (sitk.GetArrayFromImage(seg.labels)[..., -1] != 0).any()  # not all background


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_a_2d_image_gets_2d_outputs_with_its_geometry(untrained_model, tmp_path, suffix):
    """The tester's G5: a 2D input gave a 3D one-slice label map (z spacing 1, origin 0)."""
    from arcoseg.modelfile import load_model

    image = sitk.GetImageFromArray(np.random.default_rng(0).random((40, 36), np.float32))
    image.SetSpacing((0.8, 0.6))
    image.SetOrigin((-3.0, 7.5))
    angle = np.radians(20)
    image.SetDirection((np.cos(angle), -np.sin(angle), np.sin(angle), np.cos(angle)))
    path = tmp_path / f"slice{suffix}"
    sitk.WriteImage(image, str(path))
    model, metadata = load_model(untrained_model)
    out = tmp_path / f"seg{suffix}"
    segment_file(model, metadata, [path], out, torch.device("cpu"),
                 entropy=tmp_path / f"seg_entropy{suffix}")
    for written in (out, tmp_path / f"seg_entropy{suffix}"):
        result = sitk.ReadImage(str(written))
        assert result.GetDimension() == 2 and result.GetSize() == image.GetSize()
        assert grid_difference(Grid.of(result), Grid.of(image)) is None
