"""The strong view of the unlabelled batch: CutMix between images of the batch and an optional
intensity jitter (spec section 2, step 2).

Every image gets a box from another image of the batch (a random cyclic shift of the batch, so no
image is mixed with itself when B > 1); the same box mixes images, pseudo-labels, confidences and
anything else passed through `mix_like`, so they stay aligned. 2D: a box of `area` of the image.
3D: a box of `area` of the in-plane (y, x) area over a slab of `slab` of the slices (z).

Hand-written rather than MONAI's CutMix transforms: those mix per sample on the CPU side and do
not return the box, which the pseudo-labels and confidences must share.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class CutMixResult(NamedTuple):
    images: torch.Tensor
    pseudo: torch.Tensor
    confidence: torch.Tensor
    box: torch.Tensor  # (B, *spatial) bool: True where the pixel comes from `partner`
    partner: torch.Tensor  # (B,) index of the image each image borrows its box from


def cutmix_box(batch: int, spatial: tuple[int, ...], generator: torch.Generator | None = None,
               area: float = 0.5, slab: float = 0.5,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A random box per image, (B, *spatial) bool, and the partner image of each image (B,)."""
    if len(spatial) not in (2, 3):
        raise ValueError(f"CutMix needs 2D or 3D images, got spatial shape {spatial}.")
    side = math.sqrt(area)
    fractions = (slab, side, side) if len(spatial) == 3 else (side, side)
    box = torch.ones((batch, *spatial), dtype=torch.bool, device=device)
    for axis, (size, fraction) in enumerate(zip(spatial, fractions)):
        length = min(size, max(1, round(size * fraction)))
        start = torch.randint(size - length + 1, (batch, 1), generator=generator, device=device)
        coord = torch.arange(size, device=device)
        inside = (coord >= start) & (coord < start + length)
        view = [batch] + [1] * len(spatial)
        view[axis + 1] = size
        box &= inside.view(view)
    shift = torch.randint(1, max(2, batch), (1,), generator=generator, device=device)
    partner = (torch.arange(batch, device=device) + shift) % batch
    return box, partner


def mix_like(tensor: torch.Tensor, box: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Apply a CutMix box to `tensor` (B, *spatial) or (B, C, *spatial)."""
    mask = box if tensor.ndim == box.ndim else box.unsqueeze(1)
    return torch.where(mask, tensor[partner], tensor)


def cutmix(images: torch.Tensor, pseudo: torch.Tensor, confidence: torch.Tensor,
           generator: torch.Generator | None = None, area: float = 0.5,
           slab: float = 0.5) -> CutMixResult:
    """Mix each image (B, C, *spatial), its pseudo-labels and confidences (B, *spatial) alike."""
    box, partner = cutmix_box(images.shape[0], tuple(images.shape[2:]), generator, area, slab,
                              images.device)
    return CutMixResult(mix_like(images, box, partner), mix_like(pseudo, box, partner),
                        mix_like(confidence, box, partner), box, partner)


def intensity_jitter(images: torch.Tensor, generator: torch.Generator | None = None,
                     strength: float = 0.1) -> torch.Tensor:
    """Per-image random contrast (x (1 ± s)) and brightness (± s) on normalised intensities."""
    shape = (images.shape[0],) + (1,) * (images.ndim - 1)
    scale = 1.0 + strength * (2 * torch.rand(shape, generator=generator, device=images.device) - 1)
    shift = strength * (2 * torch.rand(shape, generator=generator, device=images.device) - 1)
    return images * scale.to(images.dtype) + shift.to(images.dtype)
