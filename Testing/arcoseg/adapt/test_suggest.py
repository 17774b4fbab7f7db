"""Next-slice suggestions rank the slices where the prediction is least certain."""

import numpy as np

from arcoseg.adapt.suggest import slice_uncertainty, suggest_slices


def _probabilities(uncertain_slices, shape=(10, 16, 16)):
    """Confident foreground square on every slice; a 50/50 foreground on the given slices."""
    p = np.zeros((2, *shape), np.float32)
    p[0] = 1.0
    p[:, :, 4:12, 4:12] = np.array([0.02, 0.98])[:, None, None, None]
    for s, level in uncertain_slices.items():
        p[:, s, 4:12, 4:12] = np.array([1 - level, level])[:, None, None]
    return p


def test_uncertainty_is_highest_where_the_model_hesitates():
    scores = slice_uncertainty(_probabilities({3: 0.55, 7: 0.7}), axis=0)
    assert scores.argmax() == 3 and scores[7] > scores[0]


def test_suggestions_skip_annotated_slices_and_neighbours_of_picks():
    probs = _probabilities({2: 0.5, 3: 0.52, 6: 0.6, 8: 0.65})
    picks = [s["slice"] for s in suggest_slices(probs, axis=0, annotated=[6], k=3)]
    assert picks == [2, 8, 0]  # 3 is next to 2; then the lowest-index of the equal rest
    assert 6 not in picks and 3 not in picks


def test_no_foreground_means_no_suggestion():
    probs = np.zeros((2, 4, 8, 8), np.float32)
    probs[0] = 1.0
    assert suggest_slices(probs, axis=0, annotated=[], k=3) == []
