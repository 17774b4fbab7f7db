"""Next-slice suggestions rank the slices where the prediction is least certain."""

import numpy as np

from arcoseg.adapt.suggest import slice_scores, slice_uncertainty, suggest_slices


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


def test_the_distance_rule_prefers_an_uncertain_slice_far_from_the_drawn_ones():
    probs = _probabilities({2: 0.6, 5: 0.6})  # equally uncertain; 2 is next to drawn slice 1
    scores = slice_scores(probs, axis=0, annotated=[1, 9], rule="distance")
    assert scores[1] == scores[9] == 0 and scores[5] == 4 * scores[2] / 1
    picks = [s["slice"] for s in suggest_slices(probs, 0, [1, 9], k=1, rule="distance")]
    assert picks == [5]


def test_the_distance_rule_weighs_a_large_uncertain_cross_section_above_a_small_one():
    probs = _probabilities({3: 0.6, 6: 0.6})
    probs[:, 6] = 0
    probs[0, 6] = 1.0
    probs[:, 6, 7:9, 7:9] = np.array([0.4, 0.6])[:, None, None]  # a small structure on slice 6
    scores = slice_scores(probs, axis=0, annotated=[0, 9], rule="distance")
    assert scores[3] > scores[6]  # same distance (3), larger uncertain area
