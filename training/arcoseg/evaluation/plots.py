"""Figures: training curves and label overlays on axial slices, written atomically as PNG.

Uses matplotlib's object-oriented API (`Figure`, rendered by Agg) and never pyplot, so no global
backend is set and nothing needs a display.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from arcoseg.constants import IGNORE_LABEL
from arcoseg.errors import InputError
from arcoseg.fileutil import atomic_path

OVERLAY_ALPHA = 0.45
# Default colours per class index (index 0, background, is never drawn).
DEFAULT_COLORS = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                  [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60]]


def _save(fig: Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(iterations, values) of records with a finite `key`; no "iteration" → record index."""
    xs, ys = [], []
    for i, record in enumerate(records):
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(record.get("iteration", i))
            ys.append(float(value))
    return xs, ys


def _plot_keys(ax: Axes, records: list[dict[str, Any]], keys: list[str], title: str) -> list[float]:
    """Plot each key's series on `ax`; return all plotted values."""
    plotted: list[float] = []
    for key in keys:
        xs, ys = _series(records, key)
        if ys:
            ax.plot(xs, ys, label=key, marker="o" if len(ys) < 30 else None, markersize=3)
            plotted.extend(ys)
    ax.set_title(title)
    ax.set_xlabel("iteration")
    if plotted:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return plotted


def plot_training_curves(records: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """Loss terms ("loss", "loss_*") and validation Dice ("val_dice", "val_dice/<class>") per
    iteration, from the training metrics log; missing columns are skipped."""
    keys = list(dict.fromkeys(k for record in records for k in record))
    loss_keys = [k for k in keys if k == "loss" or k.startswith("loss_")]
    val_keys = [k for k in keys if k == "val_dice" or k.startswith("val_dice/")]
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, val_ax = fig.subplots(1, 2)
    losses = _plot_keys(loss_ax, records, loss_keys, "training loss")
    # Log scale only when every value is positive and they span more than a decade.
    if losses and min(losses) > 0 and max(losses) / min(losses) > 10:
        loss_ax.set_yscale("log")
    _plot_keys(val_ax, records, val_keys, "validation Dice")
    _save(fig, path)


def _default_slices(masks: list[np.ndarray], depth: int, count: int = 3) -> list[int]:
    """`count` axial slices evenly spread through the foreground (through the volume if none)."""
    foreground = np.flatnonzero(np.any([m.any(axis=(1, 2)) for m in masks], axis=0))
    candidates = foreground if foreground.size else np.arange(depth)
    positions = np.linspace(0, candidates.size - 1, count + 2)[1:-1]
    return sorted(set(candidates[np.floor(positions + 0.5).astype(int)].tolist()))


def _rgba(label_yx: np.ndarray, colors: Sequence[Sequence[int]]) -> np.ndarray:
    """Semi-transparent colour image of a label slice; background and unannotated transparent."""
    rgba = np.zeros((*label_yx.shape, 4))
    for value in np.unique(label_yx):
        if value in (0, IGNORE_LABEL):
            continue
        rgb = np.asarray(colors[value % len(colors)]) / 255.0
        rgba[label_yx == value] = [*rgb, OVERLAY_ALPHA]
    return rgba


def save_overlay_png(image_zyx: np.ndarray, label_zyx: np.ndarray, path: str | os.PathLike,
                     colors: list[list[int]] | None = None, gt_zyx: np.ndarray | None = None,
                     slices: list[int] | None = None, title: str = "") -> None:
    """Axial slices of `image_zyx` in grey with `label_zyx` overlaid (row 1) and `gt_zyx` (row 2).

    `colors[k]` is the RGB (0–255) colour of label value k; by default 3 slices evenly spread
    through the foreground are shown.
    """
    rows = {"prediction": label_zyx} if gt_zyx is None else {"prediction": label_zyx,
                                                              "ground truth": gt_zyx}
    for name, array in rows.items():
        if array.shape != image_zyx.shape or image_zyx.ndim != 3:
            raise InputError(f"Overlay: {name} shape {array.shape} must equal the (z, y, x) image "
                             f"shape {image_zyx.shape}.")
    depth = image_zyx.shape[0]
    slices = slices if slices is not None else _default_slices(list(rows.values()), depth)
    if not slices or not all(0 <= z < depth for z in slices):
        raise InputError(f"Overlay slices {slices} must be within 0…{depth - 1}.")
    colors = colors or DEFAULT_COLORS
    vmin, vmax = np.percentile(image_zyx, [0.5, 99.5])

    fig = Figure(figsize=(3 * len(slices), 3 * len(rows) + (0.4 if title else 0)),
                 layout="constrained")
    axes = fig.subplots(len(rows), len(slices), squeeze=False)
    for r, (name, labels) in enumerate(rows.items()):
        for c, z in enumerate(slices):
            ax = axes[r, c]
            ax.imshow(image_zyx[z], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.imshow(_rgba(labels[z], colors), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}, z={z}", fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path)
