"""The strong view: CutMix boxes between images of the batch (spec section 2, step 2; the
intensity jitter that follows is `data.intensity`).

Mixing modes (`mixing_plan`), over the pool of labelled then unlabelled images of one step:
- "unlabelled" (the spec): each unlabelled image gets a box from another unlabelled image (a
  random cyclic shift of that batch, so none is mixed with itself when B > 1); labelled images
  stay as they are.
- "bidirectional" (BCP, Bai et al., CVPR 2023): each unlabelled image gets a box from a labelled
  image and each labelled image a box from an unlabelled one. Every input then holds labelled
  and unlabelled anatomy with ground truth in one part and pseudo-labels in the other, so the
  student cannot tell labelled patients from the rest by the image alone (an option; on ACDC it
  made no clear difference, RESULTS.md).
- "none": no mixing.
The same plan mixes images, annotations, pseudo-labels and confidences, so they stay aligned.
2D: a box of `area` of the image. 3D: a box of `area` of the in-plane (y, x) area over a slab of
`slab` of the slices (z).

Hand-written rather than MONAI's CutMix transforms: those mix per sample on the CPU side and do
not return the box, which the pseudo-labels and confidences must share.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from arcoseg.constants import MIX_MODES


class MixPlan(NamedTuple):
    """Output image k = pool[base[k]] with the box `box[k]` taken from pool[partner[k]]."""

    base: torch.Tensor  # (B,) index into the pool
    partner: torch.Tensor  # (B,) index into the pool
    box: torch.Tensor  # (B, *spatial) bool

    def apply(self, pool: torch.Tensor) -> torch.Tensor:
        """Mix a pool tensor (P, *grid) or (P, C, *grid) by the plan. On a grid other than the
        box's (the embeddings' reduced resolution) the box is resampled to it by
        `nearest_resize`, as the labels are, so each grid point takes its value from the same
        pool image as its label."""
        spatial = tuple(pool.shape[pool.ndim - self.box.ndim + 1:])
        box = self.box if spatial == tuple(self.box.shape[1:]) else nearest_resize(self.box,
                                                                                    spatial)
        mask = box if pool.ndim == box.ndim else box.unsqueeze(1)
        return torch.where(mask, pool[self.partner], pool[self.base])


def nearest_resize(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Nearest-neighbour resampling of (B, *spatial) integer or bool maps to (B, *size)."""
    resized = F.interpolate(maps[:, None].float(), size=size, mode="nearest")[:, 0]
    return resized.to(maps.dtype)


def cutmix_box(batch: int, spatial: tuple[int, ...], generator: torch.Generator | None = None,
               area: float = 0.5, slab: float = 0.5,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """A random box per image, (B, *spatial) bool."""
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
    return box


def mixing_plan(n_labelled: int, n_unlabelled: int, spatial: tuple[int, ...], mode: str,
                generator: torch.Generator | None = None, area: float = 0.5,
                device: torch.device | str = "cpu") -> MixPlan:
    """The mixing of one step's pool [labelled..., unlabelled...] (see the module doc)."""
    if mode not in MIX_MODES:
        raise ValueError(f"Unknown mixing mode {mode!r}; choose one of {', '.join(MIX_MODES)}.")
    n_l, n_u = n_labelled, n_unlabelled
    box = cutmix_box(n_l + n_u, spatial, generator, area, device=device)
    base = torch.arange(n_l + n_u, device=device)
    partner = base.clone()
    labelled, unlabelled = base[:n_l], base[n_l:] - n_l
    if mode == "unlabelled" and n_u:
        shift = torch.randint(1, max(2, n_u), (1,), generator=generator, device=device)
        partner[n_l:] = n_l + (unlabelled + shift) % n_u
        box[:n_l] = False
    elif mode == "bidirectional" and n_l and n_u:
        partner[:n_l] = n_l + labelled % n_u
        partner[n_l:] = unlabelled % n_l
    else:
        box[:] = False
    return MixPlan(base, partner, box)
