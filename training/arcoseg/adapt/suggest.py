"""Next-slice suggestions: the slices where the model is least sure about the structures."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

from arcoseg.inference import normalized_entropy


def slice_uncertainty(probabilities: np.ndarray, axis: int, border: int = 2) -> np.ndarray:
    """Mean predictive entropy per slice along `axis`, inside the predicted foreground and a
    `border`-voxel rim around it (0 for slices with no foreground nearby)."""
    entropy = normalized_entropy(probabilities)
    region = probabilities.argmax(axis=0) > 0
    if border and region.any():
        region = binary_dilation(region, iterations=border)
    others = tuple(a for a in range(3) if a != axis)
    counts = region.sum(axis=others)
    totals = np.where(region, entropy, 0.0).sum(axis=others)
    return np.divide(totals, counts, out=np.zeros(len(counts)), where=counts > 0)


def suggest_slices(probabilities: np.ndarray, axis: int, annotated: list[int],
                   k: int = 3) -> list[dict[str, float]]:
    """The k most uncertain slices, skipping annotated ones and direct neighbours of a pick."""
    scores = slice_uncertainty(probabilities, axis)
    taken = set(annotated)
    picks: list[dict[str, float]] = []
    for s in np.argsort(-scores, kind="stable"):
        if len(picks) == k or scores[s] <= 0:
            break
        if int(s) in taken or any(abs(int(s) - p["slice"]) <= 1 for p in picks):
            continue
        picks.append({"slice": int(s), "uncertainty": float(scores[s])})
    return picks
