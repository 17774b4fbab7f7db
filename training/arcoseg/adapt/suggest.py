"""Next-slice suggestions: the slices where a new annotation should change the most.

Rules (`SUGGEST_RULES`):
- "uncertainty": the highest mean predictive entropy inside the predicted structure;
- "distance": the total entropy inside the predicted structure times the slice distance to the
  nearest annotated slice — a slice next to a drawn one is mostly implied by it, and a large
  uncertain cross-section moves Dice more than a small one (issue 13, training/benchmarks/RESULTS.md).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

from arcoseg.adapt.baselines import slice_distance
from arcoseg.errors import check_choice
from arcoseg.inference import normalized_entropy

SUGGEST_RULES = ("uncertainty", "distance")


def slice_uncertainty(probabilities: np.ndarray, axis: int, border: int = 2,
                      total: bool = False) -> np.ndarray:
    """Predictive entropy per slice along `axis`, inside the predicted foreground and a
    `border`-voxel rim around it: the mean (or with `total` the sum; 0 for slices with no
    foreground nearby). probabilities: (K, z, y, x)."""
    entropy = normalized_entropy(probabilities)
    region = probabilities.argmax(axis=0) > 0
    if border and region.any():
        region = binary_dilation(region, iterations=border)
    others = tuple(a for a in range(3) if a != axis)
    counts = region.sum(axis=others)
    totals = np.where(region, entropy, 0.0).sum(axis=others)
    if total:
        return totals.astype(np.float64)
    return np.divide(totals, counts, out=np.zeros(len(counts)), where=counts > 0)


def slice_scores(probabilities: np.ndarray, axis: int, annotated: list[int],
                 rule: str) -> np.ndarray:
    """(slices,) how much annotating each slice along `axis` should help under `rule`."""
    check_choice(rule, SUGGEST_RULES, "suggestion rule")
    if rule == "uncertainty" or not annotated:
        return slice_uncertainty(probabilities, axis)
    distance = slice_distance(probabilities.shape[axis + 1], annotated)
    return slice_uncertainty(probabilities, axis, total=True) * distance


def suggest_slices(probabilities: np.ndarray, axis: int, annotated: list[int],
                   k: int = 3, rule: str = "uncertainty") -> list[dict[str, float]]:
    """The k best slices under `rule`, skipping annotated ones and direct neighbours of a pick."""
    scores = slice_scores(probabilities, axis, annotated, rule)
    taken = set(annotated)
    picks: list[dict[str, float]] = []
    for s in np.argsort(-scores, kind="stable"):
        if len(picks) == k or scores[s] <= 0:
            break
        if int(s) in taken or any(abs(int(s) - p["slice"]) <= 1 for p in picks):
            continue
        picks.append({"slice": int(s), "uncertainty": float(scores[s])})
    return picks
