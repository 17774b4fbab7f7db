"""Training batch samplers: random 2D slices and 3D patches with foreground oversampling.

Every random choice comes from one numpy Generator, so a sampler is deterministic for its seed
and `state_dict()` / `load_state_dict()` resume it exactly. Labels: contiguous classes,
IGNORE_LABEL = unannotated; cases without labels give all-IGNORE_LABEL label patches. Patches
that stick out of the volume are padded with 0 (image, i.e. the mean after z-scoring) and 0
(label, background). With `jitter` > 0 each image of a batch also gets a random contrast and
brightness (`data.intensity`; its draws are seeded from the sampler's Generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.intensity import check_jitter, intensity_jitter
from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.errors import InputError

_MAX_CANDIDATES = 10_000  # voxel positions kept per case for centring patches


@dataclass
class _Volume:
    image: np.ndarray  # (C, z, y, x), z = the sampling axis for slices
    label: np.ndarray | None  # (z, y, x) or None (unlabelled)
    foreground: np.ndarray  # flat indices of voxels with a class 1..254 (subsampled)
    annotated: np.ndarray | None  # flat indices of annotated voxels if the label is partial


def _subsample(flat_indices: np.ndarray) -> np.ndarray:
    step = max(1, -(-flat_indices.size // _MAX_CANDIDATES))
    return flat_indices[::step]


def _prepare(case: PreprocessedCase, axis: int) -> _Volume | None:
    """Index a case for sampling; None for a labelled case without any annotated voxel."""
    image = np.moveaxis(case.image, axis + 1, 1)
    if case.label is None:
        return _Volume(image, None, np.empty(0, np.int64), None)
    label = np.moveaxis(case.label, axis, 0)
    unannotated = label == IGNORE_LABEL
    foreground = _subsample(np.flatnonzero((label > 0) & ~unannotated))
    annotated = _subsample(np.flatnonzero(~unannotated)) if unannotated.any() else None
    if annotated is not None and annotated.size == 0:
        return None
    return _Volume(image, label, foreground, annotated)


def _window_start(length: int, patch: int, centre: int | None, rng: np.random.Generator) -> int:
    """Start of a patch along one axis: random, or centred on `centre`; may be negative (pad)."""
    low, high = min(0, length - patch), max(0, length - patch)
    if centre is None:
        return int(rng.integers(low, high + 1))
    return int(np.clip(centre - patch // 2, low, high))


def _crop(array: np.ndarray, starts: Sequence[int], size: Sequence[int],
          fill: float) -> np.ndarray:
    """The window [start, start + size) over the last len(size) axes, padded with `fill`."""
    lead = array.shape[: array.ndim - len(size)]
    out = np.full((*lead, *size), fill, dtype=array.dtype)
    src, dst = [Ellipsis], [Ellipsis]
    for start, n, length in zip(starts, size, array.shape[len(lead):]):
        lo, hi = max(start, 0), min(start + n, length)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - start, max(hi, lo) - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


class _PatchSamplerBase:
    """Shared logic: case choice, centring (foreground / annotated voxels), cropping, state."""

    def __init__(self, cases: list[PreprocessedCase], patch_zyx: tuple[int, int, int],
                 batch_size: int, seed: int, augment: bool, fg_fraction: float, axis: int,
                 slice_mode: bool, jitter: float) -> None:
        check_jitter(jitter)
        if not cases:
            raise InputError("No cases to sample training batches from.")
        volumes = [_prepare(c, axis) for c in cases]
        self._volumes = [v for v in volumes if v is not None]
        if not self._volumes:
            raise InputError("None of the labelled cases has an annotated voxel; nothing to "
                             "train on. Check the label maps.")
        self.patch_zyx = patch_zyx
        self.batch_size = batch_size
        self.augment = augment
        self.jitter = jitter
        self.fg_fraction = fg_fraction
        self._slice_mode = slice_mode
        self._rng = np.random.default_rng(seed)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: images (B, C, *patch) float32 and labels (B, *patch) int64."""
        pairs = [self._augment(*self._draw()) if self.augment else self._draw()
                 for _ in range(self.batch_size)]
        images = torch.from_numpy(np.stack([np.ascontiguousarray(p[0]) for p in pairs])).float()
        labels = torch.from_numpy(np.stack([np.ascontiguousarray(p[1]) for p in pairs]))
        if self.jitter > 0:
            generator = torch.Generator().manual_seed(int(self._rng.integers(2 ** 62)))
            images = intensity_jitter(images, generator, self.jitter)
        return images, labels.long()

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe random state."""
        return {"bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the random state saved by `state_dict`."""
        self._rng.bit_generator.state = state["bit_generator"]

    def _draw(self) -> tuple[np.ndarray, np.ndarray]:
        vol = self._volumes[int(self._rng.integers(len(self._volumes)))]
        shape = vol.image.shape[1:]
        centre = self._centre(vol, shape)
        starts = [_window_start(n, p, c, self._rng)
                  for n, p, c in zip(shape, self.patch_zyx, centre)]
        image = _crop(vol.image, starts, self.patch_zyx, 0.0)
        if vol.label is None:
            label = np.full(self.patch_zyx, IGNORE_LABEL, dtype=np.uint8)
        else:
            label = _crop(vol.label, starts, self.patch_zyx, 0)
        if self._slice_mode:
            return image[:, 0], label[0]
        return image, label

    def _centre(self, vol: _Volume, shape: tuple[int, ...]) -> list[int | None]:
        """A voxel to centre on: foreground with probability fg_fraction, else an annotated
        voxel for partial labels, else none (a random slice in slice mode)."""
        if vol.foreground.size and self._rng.random() < self.fg_fraction:
            candidates = vol.foreground
        else:
            candidates = vol.annotated
        if candidates is not None:
            flat = candidates[int(self._rng.integers(candidates.size))]
            return [int(i) for i in np.unravel_index(flat, shape)]
        if self._slice_mode:
            return [int(self._rng.integers(shape[0])), None, None]
        return [None, None, None]

    def _augment(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class SliceSampler(_PatchSamplerBase):
    """Random 2D slices along `axis` (0 = z), cropped/padded to `patch_size` (y, x).

    Labelled cases never give slices whose labels are all IGNORE_LABEL. Augmentation: random
    rot90 (multiples of 180 degrees for non-square patches) and flips, the same for image/label.
    """

    def __init__(self, cases: list[PreprocessedCase], patch_size: tuple[int, int],
                 batch_size: int, seed: int, augment: bool = True, fg_fraction: float = 0.33,
                 axis: int = 0, jitter: float = 0.0) -> None:
        super().__init__(cases, (1, *patch_size), batch_size, seed, augment, fg_fraction, axis,
                         slice_mode=True, jitter=jitter)

    def _augment(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        square = self.patch_zyx[1] == self.patch_zyx[2]
        k = int(self._rng.integers(4)) if square else 2 * int(self._rng.integers(2))
        image, label = np.rot90(image, k, axes=(1, 2)), np.rot90(label, k, axes=(0, 1))
        for axis in (0, 1):
            if self._rng.random() < 0.5:
                image, label = np.flip(image, axis + 1), np.flip(label, axis)
        return image, label


class PatchSampler(_PatchSamplerBase):
    """Random 3D patches (z, y, x); augmentation: a random flip along each axis."""

    def __init__(self, cases: list[PreprocessedCase], patch_size: tuple[int, int, int],
                 batch_size: int, seed: int, augment: bool = True,
                 fg_fraction: float = 0.33, jitter: float = 0.0) -> None:
        super().__init__(cases, tuple(patch_size), batch_size, seed, augment,  # type: ignore
                         fg_fraction, axis=0, slice_mode=False, jitter=jitter)

    def _augment(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for axis in (0, 1, 2):
            if self._rng.random() < 0.5:
                image, label = np.flip(image, axis + 1), np.flip(label, axis)
        return image, label
