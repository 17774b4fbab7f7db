"""Tiny synthetic phantom images and datasets for the demo and the tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from arcoseg.fileutil import write_text_atomic
from arcoseg.io.images import write_image

PHANTOM_ORIGIN_XYZ = (-12.5, 7.0, 3.25)


def make_phantom(shape_zyx: tuple[int, int, int] = (16, 48, 48), num_classes: int = 3,
                 seed: int = 0, spacing_zyx: tuple[float, float, float] = (2.0, 1.0, 1.0)
                 ) -> tuple[sitk.Image, sitk.Image]:
    """A noisy image with nested/adjacent ellipsoids and its label map (classes 0..K-1).

    Class k (k >= 1) is an ellipsoid painted over the previous ones, so blobs nest or touch; each
    class has its own mean intensity. Every class is present. Identity direction, non-zero origin.
    """
    if num_classes < 2:
        raise ValueError("num_classes must be at least 2 (background and one class)")
    rng = np.random.default_rng(seed)
    shape = np.asarray(shape_zyx)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    label = np.zeros(shape_zyx, dtype=np.uint8)
    for k in range(1, num_classes):
        shrink = 1.0 - 0.5 * (k - 1) / max(num_classes - 2, 1)  # 1.0 down to 0.5
        radii = np.maximum(shape * 0.35 * shrink * rng.uniform(0.85, 1.15, 3), 1.5)
        centre = shape / 2 + rng.uniform(-0.1, 0.1, 3) * shape + (k - 1) * radii * [0, 0.3, 0.3]
        inside = (((grid - centre) / radii) ** 2).sum(axis=-1) <= 1.0
        label[inside] = k
    missing = set(range(num_classes)) - set(np.unique(label).tolist())
    if missing:
        raise ValueError(f"shape {shape_zyx} is too small for {num_classes} classes")
    means = np.concatenate([[0.0], rng.permutation(np.arange(1, num_classes)) * 100.0])
    image = gaussian_filter(means[label], sigma=0.8)
    image += gaussian_filter(rng.normal(0.0, 60.0, shape_zyx), sigma=1.5)
    image += rng.normal(0.0, 10.0, shape_zyx) + 50.0
    spacing_xyz = tuple(float(s) for s in reversed(spacing_zyx))
    images = []
    for array in (image.astype(np.float32), label):
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(spacing_xyz)
        img.SetOrigin(PHANTOM_ORIGIN_XYZ)
        images.append(img)
    return images[0], images[1]


def make_phantom_dataset(root: str | os.PathLike, num_cases: int = 6,
                         shape_zyx: tuple[int, int, int] = (16, 48, 48), num_classes: int = 3,
                         layout: str = "nnunet", seed: int = 0, val_cases: int = 2,
                         modality: str = "MRI") -> Path:
    """Write a phantom dataset folder (nnU-Net v2 or MSD layout) and return its path.

    nnU-Net: `dataset.json` with labels, file_ending, channel_names, `splits` (the last
    `val_cases` cases are 'val') and `labelled_order` (the train cases in a seeded order).
    MSD: `dataset.json` with a `training` list and value->name labels, no splits.
    """
    if layout not in ("nnunet", "msd"):
        raise ValueError(f"layout must be 'nnunet' or 'msd', not {layout!r}")
    root = Path(root)
    ids = [f"case_{i:03d}" for i in range(num_cases)]
    channel = "_0000" if layout == "nnunet" else ""
    for i, case_id in enumerate(ids):
        image, label = make_phantom(shape_zyx, num_classes, seed=seed * 1000 + i)
        write_image(image, root / "imagesTr" / f"{case_id}{channel}.nii.gz")
        write_image(label, root / "labelsTr" / f"{case_id}.nii.gz")
    class_names = ["background"] + [f"class{k}" for k in range(1, num_classes)]
    info: dict = {"name": root.name, "numTraining": num_cases}
    if layout == "nnunet":
        train = ids[:num_cases - val_cases]
        info |= {"channel_names": {"0": modality},
                 "labels": {name: k for k, name in enumerate(class_names)},
                 "file_ending": ".nii.gz",
                 "splits": {"train": train, "val": ids[num_cases - val_cases:]},
                 "labelled_order": [str(c) for c in np.random.default_rng(seed).permutation(train)]}
    else:
        info |= {"modality": {"0": modality},
                 "labels": {str(k): name for k, name in enumerate(class_names)},
                 "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                              for c in ids]}
    write_text_atomic(root / "dataset.json", json.dumps(info, indent=2))
    return root
