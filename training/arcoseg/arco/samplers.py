"""Pixel samplers of the contrastive loss: naive (NS), stratified group (SG) and
stratified-antithetic group (SAG) sampling (ARCO spec, section 4).

All samplers return indices into the *flattened* candidate mask. A mask is one image
(`spatial_dims` = mask.ndim, the default) or a batch (B, *spatial) with `spatial_dims` given;
SG/SAG groups are then per image: B x g^d groups. The grid uses min(g, size) cells per axis;
cell `c` of an axis of size S holds the indices i with floor(i * g / S) == c.

Everything is vectorised and free of host synchronisation (no `.item()`, no boolean-mask
indexing): candidates are put in a random order within their group by one sort, and each draw
reads the position it needs from that order. Only the public wrappers look at the host once, to
return an empty result when there is no candidate at all.

Reuse of candidates: a group (or, for NS, the whole mask) gives each of its candidates at most
once as long as it has at least as many candidates as draws; only when there are fewer than k
candidates are they reused, cycling through the same random order (each is drawn floor(k/n) or
ceil(k/n) times).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from arcoseg.constants import SAMPLERS


def ranks(order: torch.Tensor) -> torch.Tensor:
    """Inverse of a permutation: the position of each item in `order` (e.g. from argsort)."""
    positions = torch.arange(order.numel(), device=order.device)
    return torch.empty_like(order).scatter_(0, order, positions)


def allocate_counts(counts: torch.Tensor, k: int) -> torch.Tensor:
    """Split `k` draws over groups in proportion to `counts` (largest-remainder rounding).

    Each group first gets floor(k * n_m / N); the draws left over go one each to the groups with
    the largest remainders (ties: lower group index first). Empty groups get nothing; the result
    sums to k unless every count is 0, in which case it is all zeros.
    """
    counts = counts.long()
    total = counts.sum()
    scaled = counts * k
    base = torch.div(scaled, total.clamp(min=1), rounding_mode="floor")
    remainder = scaled - base * total
    missing = (k - base.sum()) * (total > 0)
    rank = ranks(torch.argsort(remainder, descending=True, stable=True))
    return base + (rank < missing).long()


@dataclass(frozen=True)
class GridLayout:
    """The g x g (x g) grid of each image of a batch of shape (batch, *shape)."""

    batch: int
    shape: tuple[int, ...]
    grid: int

    @classmethod
    def of(cls, mask_shape: tuple[int, ...], grid: int, spatial_dims: int | None) -> GridLayout:
        """Layout of a mask (*spatial) or (B, *spatial); `spatial_dims` None means unbatched."""
        dims = len(mask_shape) if spatial_dims is None else spatial_dims
        if not 1 <= dims <= len(mask_shape) <= dims + 1:
            raise ValueError(f"Mask of shape {tuple(mask_shape)} is not (B, *spatial) or "
                             f"(*spatial) with {dims} spatial dimensions.")
        batch = mask_shape[0] if len(mask_shape) > dims else 1
        return cls(batch, tuple(mask_shape[-dims:]), max(1, grid))

    @property
    def cells(self) -> tuple[int, ...]:
        """Grid cells along each axis."""
        return tuple(min(self.grid, s) for s in self.shape)

    @property
    def cells_per_image(self) -> int:
        return math.prod(self.cells)

    @property
    def max_cell_size(self) -> int:
        """Pixels in the largest cell."""
        return math.prod(-(-s // g) for s, g in zip(self.shape, self.cells))

    def coords(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per-axis spatial coordinates of flat indices (the image index is dropped)."""
        return torch.unravel_index(flat % math.prod(self.shape), self.shape)

    def group_of(self, flat: torch.Tensor) -> torch.Tensor:
        """Group id (image * cells_per_image + cell) of flat indices."""
        group = torch.div(flat, math.prod(self.shape), rounding_mode="floor")
        for coord, size, cells in zip(self.coords(flat), self.shape, self.cells):
            group = group * cells + torch.div(coord * cells, size, rounding_mode="floor")
        return group

    def cell_of(self, flat: torch.Tensor) -> torch.Tensor:
        """Cell id within its image (0 .. cells_per_image - 1) of flat indices."""
        return self.group_of(flat) % self.cells_per_image

    def reflect(self, flat: torch.Tensor) -> torch.Tensor:
        """Point reflection of each pixel through the centre of its grid cell (same cell)."""
        image = torch.div(flat, math.prod(self.shape), rounding_mode="floor")
        out = image
        for coord, size, cells in zip(self.coords(flat), self.shape, self.cells):
            cell = torch.div(coord * cells, size, rounding_mode="floor")
            low = torch.div(cell * size + cells - 1, cells, rounding_mode="floor")
            high = torch.div((cell + 1) * size + cells - 1, cells, rounding_mode="floor")
            out = out * size + (low + high - 1 - coord)
        return out


@dataclass
class _Strata:
    """Candidates sorted by group, in random order within a group."""

    order: torch.Tensor  # (N,) flat indices; the candidates of group m are at offsets[m] + j
    counts: torch.Tensor  # (M,) candidates per group
    offsets: torch.Tensor  # (M,)


def _strata(group: torch.Tensor, num_groups: int, generator: torch.Generator | None) -> _Strata:
    """`group`: (N,) group id per item, `num_groups` for items that are not candidates."""
    n = group.numel()
    shuffle = torch.randperm(n, generator=generator, device=group.device)
    order = torch.argsort(group * n + shuffle)
    counts = torch.zeros(num_groups + 1, dtype=torch.long, device=group.device)
    counts = counts.index_add_(0, group, torch.ones_like(group))[:num_groups]
    return _Strata(order, counts, torch.cumsum(counts, 0) - counts)


def _stratified_draw(strata: _Strata, k: int) -> tuple[torch.Tensor, ...]:
    """k draws allocated to groups by `allocate_counts`; returns (indices, group, rank, alloc).

    Draws are listed group by group; `rank` is a draw's position within its group.
    """
    device = strata.counts.device
    alloc = allocate_counts(strata.counts, k)
    group = torch.repeat_interleave(torch.arange(alloc.numel(), device=device), alloc,
                                    output_size=k)
    rank = torch.arange(k, device=device) - (torch.cumsum(alloc, 0) - alloc)[group]
    position = strata.offsets[group] + rank % strata.counts[group].clamp(min=1)
    return strata.order[position], group, rank, alloc


def _snap(targets: torch.Tensor, group: torch.Tensor, strata: _Strata,
          layout: GridLayout) -> torch.Tensor:
    """The candidate of `group` nearest (Euclidean, pixel units) to each target pixel.

    Searches a window of `max_cell_size` sorted candidates per target: a group never has more.
    """
    window = torch.arange(layout.max_cell_size, device=targets.device)
    position = (strata.offsets[group, None] + window).clamp(max=strata.order.numel() - 1)
    candidates = strata.order[position]
    distance = torch.zeros(candidates.shape, dtype=torch.long, device=targets.device)
    for cand, target in zip(layout.coords(candidates), layout.coords(targets)):
        distance += (cand - target[:, None]) ** 2
    outside = window >= strata.counts[group, None]
    distance = distance.masked_fill(outside, torch.iinfo(torch.long).max)
    return candidates.gather(1, distance.argmin(1, keepdim=True)).squeeze(1)


def draw(sampler: str, mask: torch.Tensor, k: int, grid: int = 4,
         generator: torch.Generator | None = None, *,
         spatial_dims: int | None = None) -> torch.Tensor:
    """k indices into `mask.flatten()` drawn by `sampler`; the mask must hold a candidate.

    No host synchronisation; with an empty mask the indices are meaningless (use `sample`).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; expected one of {SAMPLERS}.")
    flat = mask.reshape(-1)
    if sampler == "ns":
        strata = _strata((~flat).long(), 1, generator)
        return _stratified_draw(strata, k)[0]
    layout = GridLayout.of(tuple(mask.shape), grid, spatial_dims)
    num_groups = layout.batch * layout.cells_per_image
    every = torch.arange(flat.numel(), device=flat.device)
    group = torch.where(flat, layout.group_of(every), num_groups)
    strata = _strata(group, num_groups, generator)
    indices, group, rank, alloc = _stratified_draw(strata, k)
    if sampler == "sg":
        return indices
    # SAG: the first ceil(a/2) draws of a group are uniform; draw ceil(a/2) + j is the antithetic
    # partner (point reflection through the cell centre, snapped to a candidate) of draw j.
    uniform = torch.div(alloc + 1, 2, rounding_mode="floor")[group]
    partner = rank >= uniform
    source = torch.arange(k, device=flat.device) - uniform * partner
    mirrored = _snap(layout.reflect(indices[source]), group, strata, layout)
    return torch.where(partner, mirrored, indices)


def sample(sampler: str, mask: torch.Tensor, k: int, grid: int = 4,
           generator: torch.Generator | None = None, *,
           spatial_dims: int | None = None) -> torch.Tensor:
    """Like `draw`, but an empty LongTensor when `mask` holds no candidate (one host sync)."""
    if k <= 0 or not bool(mask.any()):
        return torch.empty(0, dtype=torch.long, device=mask.device)
    return draw(sampler, mask, k, grid, generator, spatial_dims=spatial_dims)


def sample_ns(candidates: torch.Tensor, k: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Naive sampling: k uniform draws over all candidates (any shape; flat indices)."""
    return sample("ns", candidates, k, generator=generator)


def sample_sg(candidate_mask: torch.Tensor, k: int, grid: int = 4,
              generator: torch.Generator | None = None, *,
              spatial_dims: int | None = None) -> torch.Tensor:
    """Stratified group sampling: draws given to grid cells in proportion to their candidates."""
    return sample("sg", candidate_mask, k, grid, generator, spatial_dims=spatial_dims)


def sample_sag(candidate_mask: torch.Tensor, k: int, grid: int = 4,
               generator: torch.Generator | None = None, *,
               spatial_dims: int | None = None) -> torch.Tensor:
    """Stratified-antithetic group sampling: SG where half of each cell's draws are reflections."""
    return sample("sag", candidate_mask, k, grid, generator, spatial_dims=spatial_dims)


def sample_bank(tags: torch.Tensor, num_groups: int, k: int, rows: int, stratified: bool,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(rows, k) indices into a memory bank whose entries carry a group tag (their grid cell).

    Each row is an independent draw with replacement (negatives per anchor; the bank is far
    larger than k, so repeats are rare). Stratified: every row gives each tag the share of its
    entries (`allocate_counts`), uniformly within the tag; otherwise uniform over the bank.
    The bank must not be empty.
    """
    if not stratified:
        tags, num_groups = torch.zeros_like(tags), 1
    strata = _strata(tags, num_groups, generator)
    alloc = allocate_counts(strata.counts, k)
    group = torch.repeat_interleave(torch.arange(num_groups, device=tags.device), alloc,
                                    output_size=k)
    uniform = torch.rand((rows, k), generator=generator, device=tags.device)
    count = strata.counts[group]
    offset = (uniform * count).long().clamp(max=count - 1)
    return strata.order[strata.offsets[group] + offset]
