"""The parent prior: Adapt from a base keeps the base's prediction far from the drawing."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import arcoseg.adapt.parent_prior as parent_prior
from arcoseg.adapt.annotations import Annotations
from arcoseg.adapt.inputs import AnnotatedImage
from arcoseg.adapt.parent_prior import parent_case, slice_weights
from arcoseg.adapt.prior import ParentPriorSettings, PriorMethod
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.errors import ArcosegError

IGNORE = 255


def test_weights_are_zero_on_drawn_slices_and_rise_with_the_distance_scaled_by_trust():
    settings = ParentPriorSettings(strength=1.0, margin=0, scale=2.0)
    w = slice_weights(12, [3, 8], settings, trust=0.5)
    assert w[3] == w[8] == 0
    assert w[2] == w[4] == pytest.approx(0.5 * (1 - np.exp(-0.5)))
    assert w[0] == pytest.approx(0.5 * (1 - np.exp(-1.5)))
    assert w[11] > w[10] > w[9] > 0  # farther from slice 8: more of the parent
    assert slice_weights(12, [3, 8], settings, trust=1.0)[0] == pytest.approx(2 * w[0])
    assert not slice_weights(12, [3, 8], settings, trust=0.01).any()  # below MIN_WEIGHT


def test_the_margin_next_to_a_drawn_slice_is_left_to_the_drawing():
    settings = ParentPriorSettings(strength=1.0, margin=2, scale=2.0)
    w = slice_weights(20, [10], settings, trust=1.0)
    assert not w[8:13].any()  # the drawn slice and 2 on each side
    assert w[7] == w[13] == pytest.approx(1 - np.exp(-0.5))
    assert w[0] == pytest.approx(1 - np.exp(-4.0))
    # a thick-sliced volume drawn every 3rd slice: the prior reaches no slice at all
    assert not slice_weights(10, [1, 4, 7], settings, trust=1.0).any()


def test_settings_out_of_range_are_refused():
    with pytest.raises(ArcosegError):
        ParentPriorSettings(strength=-1)
    with pytest.raises(ArcosegError):
        ParentPriorSettings(scale=0)
    with pytest.raises(ArcosegError):
        ParentPriorSettings(margin=-1)
    assert not ParentPriorSettings(strength=0).active and ParentPriorSettings(strength=0.5).active


def _one_image(truth: np.ndarray, drawn_slices: list[int]):
    """A 2D plan whose grid is the image's own, and the drawing of `drawn_slices` of `truth`."""
    image = sitk.GetImageFromArray(truth.astype(np.float32))
    drawn = np.full_like(truth, IGNORE)
    drawn[drawn_slices] = truth[drawn_slices]
    item = AnnotatedImage(Path("img.nii.gz"), image, Annotations(drawn, 0, drawn_slices))
    plan = Plan(dims=2, target_spacing=(1.0, 1.0, 1.0), normalization="zscore",
                label_values=[0, 1], patch_size=(8, 8))
    case = PreprocessedCase("img", truth[None].astype(np.float32), drawn, (1.0, 1.0, 1.0))
    return item, case, plan


def test_the_parent_s_prediction_becomes_targets_weighted_by_its_agreement_with_the_drawing(
        monkeypatch):
    truth = np.zeros((10, 8, 8), np.uint8)
    truth[:, 2:6, 2:6] = 1
    prediction = truth.copy()
    prediction[2, 2:6, 2:4] = 0  # the parent misses half the object on drawn slice 2
    monkeypatch.setattr(parent_prior, "predict_labels", lambda *args: prediction.copy())
    item, case, plan = _one_image(truth, [2, 6])
    settings = ParentPriorSettings(strength=1.0, margin=0, scale=3.0)
    prior, trust = parent_case(None, item, case, plan, settings, torch.device("cpu"))
    # Dice on the drawn slices: 24 voxels predicted, 32 drawn, 24 shared
    assert trust == pytest.approx(2 * 24 / (24 + 32))
    labels, weights = prior.label, prior.image[-1]
    assert (labels[[2, 6]] == IGNORE).all() and not weights[[2, 6]].any()
    np.testing.assert_array_equal(labels[[0, 4, 9]], prediction[[0, 4, 9]])
    expected = slice_weights(10, [2, 6], settings, trust)
    np.testing.assert_allclose(weights[:, 0, 0], expected, rtol=1e-5)
    np.testing.assert_array_equal(prior.image[:-1], case.image)


def test_the_held_out_drawn_slice_is_never_a_target_of_the_parent(monkeypatch):
    truth = np.zeros((16, 8, 8), np.uint8)
    truth[:, 2:6, 2:6] = 1
    monkeypatch.setattr(parent_prior, "predict_labels", lambda *args: truth.copy())
    item, case, plan = _one_image(truth, [2, 14])
    held = np.full_like(truth, IGNORE)
    held[8] = truth[8]
    item.held_out = Annotations(held, 0, [8])  # drawn, but held out of the training labels
    settings = ParentPriorSettings(strength=1.0, margin=0, scale=3.0)
    prior, _ = parent_case(None, item, case, plan, settings, torch.device("cpu"))
    assert (prior.label[8] == IGNORE).all() and not prior.image[-1, 8].any()
    assert prior.image[-1, 7, 0, 0] == pytest.approx(1 - np.exp(-1 / 3))  # next to slice 8


def test_no_prior_when_the_drawing_holds_no_foreground(monkeypatch):
    truth = np.zeros((6, 8, 8), np.uint8)
    monkeypatch.setattr(parent_prior, "predict_labels", lambda *args: truth.copy())
    item, case, plan = _one_image(truth, [1, 4])
    prior, trust = parent_case(None, item, case, plan, ParentPriorSettings(strength=1.0),
                               torch.device("cpu"))
    assert prior is None and trust is None


def test_adapting_from_a_parent_trains_on_its_prediction_and_records_the_prior(case, tmp_path,
                                                                              monkeypatch):
    from arcoseg.adapt.run import AdaptRequest, adapt
    from arcoseg.progress import Reporter

    def request(**kw):
        return AdaptRequest(images=[case["image"]], annotations=[case["ann"]], budget=600,
                            iterations=3, device="cpu", holdout=False, **kw)

    adapt(request(classes=["a", "b"]), Reporter(quiet=True), lambda: False)
    trained: list[str] = []
    step = PriorMethod.training_step

    def spy(self, *args):
        loss, terms = step(self, *args)
        trained.extend(terms)
        return loss, terms
    monkeypatch.setattr(PriorMethod, "training_step", spy)
    log = io.StringIO()
    result = adapt(request(model="adapted",
                           parent_prior=ParentPriorSettings(strength=0.5, margin=0)),
                   Reporter(log), lambda: False)
    said = re.search(r"Parent prior on img\.nii\.gz: the parent scores Dice ([0-9.]+) on the "
                     r"drawn slices; its prediction is kept with weight up to ([0-9.]+)",
                     log.getvalue())
    assert said and 0 < float(said[1]) <= 1
    assert float(said[2]) == pytest.approx(0.5 * float(said[1]), abs=0.01)
    meta = json.loads((Path(result["model"]["path"]) / "model.json").read_text())
    assert meta["provenance"]["parent_prior"] == {"strength": 0.5, "margin": 0, "scale": 3.0}
    assert result["iterations"] == 3 and trained.count("loss_parent") == 3
