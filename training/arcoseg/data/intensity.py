"""Intensity augmentation of training images: a random contrast and brightness per image.

Everything the student sees is jittered: the labelled batches (SliceSampler / PatchSampler) and
the strong view of the unlabelled images (arco.step); the teacher labels unjittered images. With
3 labelled ACDC patients, strength 0.5 lifted supervised training from 52.6 / 58.2 to 69.6 /
66.1 mean Dice (seeds 0 / 1) at the cpu profile: patients' MR intensities differ more than
z-scoring removes. With all 70 patients it cost 2.8 points at the same budget (85.1 -> 82.3;
training/benchmarks/RESULTS.md). `arcoseg train` and the benchmarks use it by default; Adapt
does not (it trains on the image it segments, and the jitter cost it 3-11 Dice points).

Hand-written rather than MONAI's RandScaleIntensity + RandShiftIntensity: those draw per sample
from their own numpy RandomState, outside the generators that checkpoints save (so a resumed run
would not continue the same draws) and off the training device.
"""

from __future__ import annotations

import torch

from arcoseg.constants import DEFAULT_JITTER
from arcoseg.ranges import FRACTION



def check_jitter(strength: float) -> None:
    """ArcosegError unless 0 <= strength < 1 (the contrast factor 1 - strength must stay > 0)."""
    FRACTION.check(strength, "Intensity jitter strength (--jitter)")


def intensity_jitter(images: torch.Tensor, generator: torch.Generator | None = None,
                     strength: float = DEFAULT_JITTER) -> torch.Tensor:
    """Per-image random contrast (x (1 ± s)) and brightness (± s) on normalised intensities."""
    shape = (images.shape[0],) + (1,) * (images.ndim - 1)
    scale = 1.0 + strength * (2 * torch.rand(shape, generator=generator, device=images.device) - 1)
    shift = strength * (2 * torch.rand(shape, generator=generator, device=images.device) - 1)
    return images * scale.to(images.dtype) + shift.to(images.dtype)
