"""Pixel samplers of the contrastive loss: naive (NS), stratified group (SG) and
stratified-antithetic group (SAG) sampling (ARCO spec, section 4), and the stratified draw from a
memory bank.

Samplers return indices into the *flattened* candidate mask. A mask is one image
(`spatial_dims` = mask.ndim, the default) or a batch (B, *spatial) with `spatial_dims` given;
SG/SAG groups are then per image: B x g^d groups. The grid uses min(g, size) cells per axis;
cell `c` of an axis of size S holds the indices i with floor(i * g / S) == c. `draw_rows` samples
R masks (e.g. one per class) at once.

Everything has fixed shapes and is free of host synchronisation (no `.item()`, no boolean-mask
indexing, no `nonzero`): candidates are put in a random order within their group by one sort,
each draw reads the position it needs from that order, and a draw that has no candidate to take
is marked invalid instead of being dropped. Only the public `sample*` wrappers look at the host
once, to return an empty result when there is no candidate at all.

Reuse of candidates: with `distinct` (what the contrastive loss uses) a row gives at most as many
valid draws as it has candidates, each candidate at most once, the rest are invalid padding.
Without it (`draw`), a group (or, for NS, the whole mask) gives each of its candidates at most
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
    """Inverse of a permutation along the last axis: the position of each item in `order`."""
    positions = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, positions)


def allocate_counts(counts: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Split `k` draws over groups in proportion to `counts` (largest-remainder rounding).

    counts: (..., M) per group; k: an int or a tensor (...) of draws per row. Each group first
    gets floor(k * n_m / N); the draws left over go one each to the groups with the largest
    remainders (ties: lower group index first). Empty groups get nothing; a row sums to k
    unless all its counts are 0, in which case it is all zeros.
    """
    counts = counts.long()
    draws = k if isinstance(k, int) else k.long().unsqueeze(-1)
    total = counts.sum(-1, keepdim=True)
    scaled = counts * draws
    base = torch.div(scaled, total.clamp(min=1), rounding_mode="floor")
    remainder = scaled - base * total
    missing = (draws - base.sum(-1, keepdim=True)) * (total > 0)
    rank = ranks(torch.argsort(remainder, dim=-1, descending=True, stable=True))
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


@dataclass
class _Draws:
    """R x k draws listed row by row and, within a row, group by group (padding last)."""

    slot: torch.Tensor  # (R*k,) padded group id: row * (M + 1) + m, m == M for padding
    rank: torch.Tensor  # (R*k,) position of the draw within its group
    group: torch.Tensor  # (R*k,) group id row * M + m (padding: clamped to a real group)
    valid: torch.Tensor  # (R*k,) bool, False for padding
    alloc: torch.Tensor  # (R*k,) draws given to the draw's group


def _allocate_draws(alloc: torch.Tensor, k: int) -> _Draws:
    """Draws of R rows whose groups get `alloc` (R, M) (row sums <= k; the rest is padding)."""
    rows, groups = alloc.shape
    device = alloc.device
    full = torch.cat([alloc, k - alloc.sum(1, keepdim=True)], 1).reshape(-1)
    slot = torch.repeat_interleave(torch.arange(full.numel(), device=device), full,
                                   output_size=rows * k)
    rank = torch.arange(rows * k, device=device) - (torch.cumsum(full, 0) - full)[slot]
    row = torch.div(slot, groups + 1, rounding_mode="floor")
    cell = slot - row * (groups + 1)
    valid = cell < groups
    return _Draws(slot, rank, row * groups + cell.clamp(max=groups - 1), valid, full[slot])


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


def draw_rows(sampler: str, masks: torch.Tensor, k: int, grid: int = 4,
              generator: torch.Generator | None = None, *, spatial_dims: int | None = None,
              distinct: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """k draws by `sampler` from each of R candidate masks (R, *mask): (indices, valid), (R, k).

    `indices` are into each row's flattened mask; `valid` marks real draws. With `distinct`, a
    row gives min(k, its candidates) valid draws, listed first; otherwise k valid draws (reusing
    candidates when there are fewer, see the module doc) unless it has no candidate at all.
    No host synchronisation.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; expected one of {SAMPLERS}.")
    rows = masks.shape[0]
    flat = masks.reshape(-1)
    per_row = flat.numel() // max(1, rows)
    every = torch.arange(flat.numel(), device=flat.device)
    if sampler == "ns":
        groups_per_row, layout = 1, None
        group = torch.div(every, per_row, rounding_mode="floor")
    else:
        single = GridLayout.of(tuple(masks.shape[1:]), grid, spatial_dims)
        layout = GridLayout(rows * single.batch, single.shape, single.grid)
        groups_per_row = single.batch * single.cells_per_image
        group = layout.group_of(every)
    num_groups = rows * groups_per_row
    strata = _strata(torch.where(flat, group, num_groups), num_groups, generator)
    counts = strata.counts.view(rows, groups_per_row)
    budget = torch.clamp(counts.sum(1), max=k) if distinct else k
    draws = _allocate_draws(allocate_counts(counts, budget), k)
    count = strata.counts[draws.group]
    position = torch.where(draws.valid, strata.offsets[draws.group] + draws.rank % count.clamp(min=1),
                           0)
    indices = strata.order[position]
    if sampler == "sag":
        # the first ceil(a/2) draws of a group are uniform; draw ceil(a/2) + j is the antithetic
        # partner (point reflection through the cell centre, snapped to a candidate) of draw j
        uniform = torch.div(draws.alloc + 1, 2, rounding_mode="floor")
        partner = (draws.rank >= uniform) & draws.valid
        source = torch.arange(rows * k, device=flat.device) - uniform * partner
        mirrored = _snap(layout.reflect(indices[source]), draws.group, strata, layout)
        indices = torch.where(partner, mirrored, indices)
    return (indices % per_row).view(rows, k), draws.valid.view(rows, k)


def draw(sampler: str, mask: torch.Tensor, k: int, grid: int = 4,
         generator: torch.Generator | None = None, *,
         spatial_dims: int | None = None) -> torch.Tensor:
    """k indices into `mask.flatten()` drawn by `sampler` (reusing candidates when there are
    fewer than k); the mask must hold a candidate. No host synchronisation; with an empty mask
    the indices are meaningless (use `sample`)."""
    return draw_rows(sampler, mask[None], k, grid, generator, spatial_dims=spatial_dims,
                     distinct=False)[0][0]


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


@dataclass
class BankDraw:
    """k draws from each of R memory banks, listed group (tag) by group."""

    slots: torch.Tensor  # (R, k) index of the drawn entry in its bank's storage
    alloc: torch.Tensor  # (R, G) draws per tag; a row sums to k, or to 0 for an empty bank


def sample_bank(tags: torch.Tensor, sizes: torch.Tensor, num_groups: int, k: int,
                stratified: bool, generator: torch.Generator | None = None) -> BankDraw:
    """k draws with replacement from each of R banks whose entries carry a group tag.

    tags: (R, n) tag (grid cell, < num_groups) of each storage slot; sizes: (R,) filled slots
    (slots 0 .. size-1 hold entries). Stratified: each tag gets the share of its entries
    (`allocate_counts`), uniformly within the tag; otherwise uniform over the bank. An empty
    bank gives an all-zero `alloc` (its slots are meaningless). No host synchronisation.
    """
    rows, n = tags.shape
    groups = num_groups if stratified else 1
    filled = torch.arange(n, device=tags.device) < sizes[:, None]
    key = torch.where(filled, tags if stratified else torch.zeros_like(tags), groups)
    order = torch.argsort(key, dim=1)
    counts = torch.zeros(rows, groups + 1, dtype=torch.long, device=tags.device)
    counts = counts.scatter_add_(1, key, torch.ones_like(key))[:, :groups].contiguous()
    alloc = allocate_counts(counts, k)
    draws = _allocate_draws(alloc, k)
    count = counts.view(-1)[draws.group]
    uniform = torch.rand(rows * k, generator=generator, device=tags.device)
    offset = torch.minimum((uniform * count).long(), (count - 1).clamp(min=0))
    start = (torch.cumsum(counts, 1) - counts).view(-1)[draws.group]
    row = torch.div(draws.group, groups, rounding_mode="floor")
    slots = order[row, torch.where(draws.valid, start + offset, 0)]
    return BankDraw(slots.view(rows, k), alloc)


def sample_pool(alloc: torch.Tensor, k: int, count: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(R, count, k) positions into R pools whose entries are listed group by group, `alloc`
    (R, G) entries per group (a `sample_bank` draw): each of the `count` draws of a row takes k
    entries, given to the groups in proportion to their pool entries (`allocate_counts`) and
    uniform within the group. An empty pool gives position 0."""
    rows = alloc.shape[0]
    draws = _allocate_draws(allocate_counts(alloc, k), k)
    size = alloc.view(-1)[draws.group].view(rows, 1, k)
    start = (torch.cumsum(alloc, 1) - alloc).view(-1)[draws.group].view(rows, 1, k)
    uniform = torch.rand((rows, count, k), generator=generator, device=alloc.device)
    return start + torch.minimum((uniform * size).long(), (size - 1).clamp(min=0))
