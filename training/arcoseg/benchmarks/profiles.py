"""Benchmark profiles (the training schedule per dataset) and the paper's reference numbers.

A profile gives, per dataset, the settings every method shares: model dimension, target spacing,
patch, batch sizes, iterations and validation interval. ACDC and LA have their own entries; any
other dataset gets the profile's generic settings for its dimension (2D when the median voxel
spacing is more than 3x anisotropic, else 3D).

Choices, measured on the shared copies (`../shared/data`, README there):
- ACDC slices are 154-428 (x, median 216) by 154-512 (y, median 256) pixels, spacing stored as
  1 mm (the real spacing is unknown in this copy). The paper resizes every slice to 256x256; we
  resample to a fixed spacing instead, so the median slice has the paper's 256 px along y at the
  stored 1 mm ('paper': patch 256x256 at 1 mm) and 128 px at 2 mm ('cpu': the same field of view
  at half the resolution; a median slice, 108x128 px, fits in one 128x128 patch, so inference is
  one window per slice). Resolution costs little: resampling the validation labels to 2 mm and
  back keeps 99.2 % Dice (99.8 % at 1.7 mm).
- LA is stored at 1.25 mm (the challenge's 0.625 mm, 2x downsampled), volumes 44 x 66-80 x
  74-122 voxels. 'cpu' trains at 1.25 mm with 48x64x64 patches (z, y, x), which covers
  60x80x80 mm, about the paper's 80x112x112 patch at 0.625 mm (50x70x70 mm). 'paper' resamples
  to 0.625 mm and uses the paper's 80x112x112 patches: the same grid and field of view as the
  paper, but the data carry only 1.25 mm detail (upsampled). A 80x112x112 patch at 1.25 mm would
  be larger than most volumes (mostly padding), so it was not chosen.
- 'cpu' iterations, timed on the 2-core development machine while no other job ran (2 torch
  threads, `--iterations 30` runs of this benchmark): ACDC supervised (8 images) 0.20 s/it, mean
  teacher (4 + 4) 0.22, arco-sg (4 + 4) 0.35, validation on the 20 val volumes ~3.5 s: 2000
  iterations take ~12 min (arco) and ~7 min (supervised). LA supervised (4 patches) 1.1 s/it,
  arco-sg (2 + 2) 1.75 s/it, validation on the 8 val volumes ~5 s: 400 iterations take ~13 min.
  Other jobs on the same cores slowed 2-thread steps 10-25x; `--threads 1` costs 1.6x when the
  machine is idle but does not collapse like that.
- Batches: semi-supervised methods take `batch` labelled + `unlabelled_batch` unlabelled images
  per step (ARCO_SPEC section 2: 4 + 4 in 2D; 2 + 2 in 3D as in UA-MT); the supervised baselines
  take `supervised_batch` = the same number of images per step, all labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from arcoseg.data.dataset import DatasetInfo
from arcoseg.errors import check_choice
from arcoseg.io.images import read_spacing_zyx

# The benchmark's methods: name -> (`arcoseg train --method`, `--sampler`). "supervised-all" is
# supervised training on every training label (the upper bound); the others use --setting.
METHODS: dict[str, tuple[str, str | None]] = {
    "supervised": ("supervised", None), "mean_teacher": ("mean_teacher", None),
    "arco-ns": ("arco", "ns"), "arco-sg": ("arco", "sg"), "arco-sag": ("arco", "sag"),
    "supervised-all": ("supervised", None)}
ALL_LABELS = "supervised-all"

ANISOTROPY_2D = 3.0  # median spacing max/min above this: train 2D slice models
KNOWN_DIMS = {"ACDC": 2, "LA": 3}  # ACDC's stored 1 mm spacing would wrongly suggest 3D


@dataclass(frozen=True)
class DatasetSettings:
    """The schedule every method of a benchmark shares on one dataset."""

    dims: int
    patch: tuple[int, ...]
    spacing: tuple[float, float, float] | None  # (z, y, x) mm; None = the dataset's median
    batch: int  # labelled images per step (semi-supervised methods)
    unlabelled_batch: int
    supervised_batch: int  # images per step of the supervised baselines (all labelled)
    iterations: int
    val_every: int
    checkpoint_every: int


@dataclass(frozen=True)
class Profile:
    """Named benchmark settings: per known dataset, and generic per model dimension."""

    name: str
    description: str
    generic: dict[int, DatasetSettings]
    datasets: dict[str, DatasetSettings] = field(default_factory=dict)


def _settings(dims: int, patch: tuple[int, ...], batch: int, iterations: int, val_every: int,
              checkpoint_every: int) -> DatasetSettings:
    """Settings at the dataset's median spacing; `batch` labelled + `batch` unlabelled images."""
    return DatasetSettings(dims, patch, None, batch, batch, 2 * batch, iterations, val_every,
                           checkpoint_every)


_CPU = {2: _settings(2, (128, 128), 4, 2000, 200, 200),
        3: _settings(3, (48, 64, 64), 2, 400, 50, 50)}
_PAPER = {2: _settings(2, (256, 256), 4, 30000, 500, 1000),
          3: _settings(3, (80, 112, 112), 2, 6000, 200, 500)}

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("cpu", "fits a 2-core machine: each run about 15 minutes or less", generic=_CPU,
            datasets={"ACDC": replace(_CPU[2], spacing=(1.0, 2.0, 2.0)),
                      "LA": replace(_CPU[3], spacing=(1.25, 1.25, 1.25))}),
    Profile("paper", "the paper's sizes and iteration counts, for a GPU", generic=_PAPER,
            datasets={"ACDC": replace(_PAPER[2], spacing=(1.0, 1.0, 1.0)),
                      "LA": replace(_PAPER[3], spacing=(0.625, 0.625, 0.625))}),
    Profile("smoke", "a few iterations on tiny patches to check the whole pipeline on a dataset "
                     "in a minute (the numbers mean nothing)",
            generic={2: _settings(2, (32, 32), 2, 3, 3, 100),
                     3: _settings(3, (16, 32, 32), 2, 3, 3, 100)}),
)}


def get_profile(name: str) -> Profile:
    """The profile called `name`; ArcosegError listing the choices otherwise."""
    check_choice(name, PROFILES, "profile")
    return PROFILES[name]


def dataset_key(dataset: DatasetInfo) -> str:
    """The name profiles and reference numbers know a dataset by (upper case)."""
    return dataset.name.upper()


def infer_dims(dataset: DatasetInfo) -> int:
    """2 or 3: known datasets by name, others 2D iff the median spacing is > 3x anisotropic."""
    if dataset_key(dataset) in KNOWN_DIMS:
        return KNOWN_DIMS[dataset_key(dataset)]
    spacing = np.median([read_spacing_zyx(c.images[0]) for c in dataset.split_cases("train")],
                        axis=0)
    return 2 if spacing.max() / spacing.min() > ANISOTROPY_2D else 3


def settings_for(profile: Profile, dataset: DatasetInfo, dims: int | None = None
                 ) -> DatasetSettings:
    """The profile's settings for `dataset` (its own entry, else generic for `dims`/inferred)."""
    dims = dims or infer_dims(dataset)
    own = profile.datasets.get(dataset_key(dataset))
    return own if own is not None and own.dims == dims else profile.generic[dims]


# ------------------------------------------------------------------------ reference numbers
PAPER_SOURCE = ("C. You et al., \"Rethinking Semi-Supervised Medical Image Segmentation: A "
                "Variance-Reduction Perspective\", NeurIPS 2023 (arXiv 2302.01735), Tables 1 "
                "and 9, as transcribed in ../shared/docs/ARCO_SPEC.md section 6. Dice % / ASD in "
                "voxels on the benchmark's test split (ACDC: 40 volumes of 20 patients; LA: 20 "
                "volumes at 0.625 mm).")

# dataset -> our method name -> labelled count (None: all training labels) -> (Dice %, ASD vox).
# The paper's "MONA" is ARCO with naive sampling (our arco-ns); it reports no mean teacher.
PAPER_RESULTS: dict[str, dict[str, dict[int | None, tuple[float, float]]]] = {
    "ACDC": {
        "supervised-all": {None: (91.5, 0.996)},
        "supervised": {1: (40.3, 22.7), 3: (51.7, 13.1), 7: (79.5, 2.73)},
        "arco-ns": {1: (82.6, 1.43), 3: (86.9, 1.07), 7: (87.7, 1.33)},
        "arco-sag": {1: (84.9, 1.47), 3: (87.1, 0.848), 7: (88.5, 1.40)},
        "arco-sg": {1: (85.5, 0.947), 3: (88.7, 0.841), 7: (89.4, 0.776)},
    },
    "LA": {
        "supervised-all": {None: (91.5, 1.51)},
        "supervised": {1: (40.0, 21.2), 4: (52.6, 9.87), 8: (82.7, 3.26)},
        "arco-ns": {1: (72.8, 10.7), 4: (87.0, 2.81), 8: (89.5, 2.40)},
        "arco-sg": {1: (75.0, 4.06), 4: (87.8, 1.66), 8: (89.9, 1.47)},
    },
}

# Other published Dice % (same source section), by labelled count.
OTHER_PUBLISHED: dict[str, dict[int, dict[str, float]]] = {
    "ACDC": {3: {"BCP": 87.59, "UniMatch": 88.9, "SS-Net": 65.82, "UA-MT": 61.0, "CPS": 60.3},
             7: {"BCP": 88.84, "UniMatch": 89.9, "SS-Net": 86.78, "MC-Net+": 87.10,
                 "UA-MT": 81.5, "CPS": 83.3}},
    "LA": {8: {"UA-MT": 84.25, "DTC": 87.51, "MC-Net+": 88.96, "SS-Net": 88.55, "BCP": 89.62}},
}

PAPER_NOTES: dict[str, str] = {
    "ACDC": "This ACDC copy stores 1 mm spacing, so our mm and voxel distances coincide.",
    "LA": ("The paper's voxel distances are on the 0.625 mm grid; ours are on this copy's 1.25 mm "
           "grid, so the same surface error is about half as many voxels here."),
}


def paper_result(dataset: str, method: str, labelled: int | None) -> tuple[float, float] | None:
    """The paper's (Dice %, ASD vox) for a dataset key, our method name and labelled count."""
    return PAPER_RESULTS.get(dataset, {}).get(method, {}).get(labelled)
