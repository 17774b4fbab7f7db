"""NS / SG / SAG samplers: validity, exact counts, proportional allocation, antithetic pairs and
the variance reduction of Thm 3.2."""

import pytest
import torch

from arcoseg.arco.samplers import (GridLayout, allocate_counts, draw_rows, sample, sample_bank,
                                   sample_ns, sample_pool, sample_sag, sample_sg)

SAMPLERS = [("ns", lambda m, k, g, d: sample_ns(m, k, generator=g)),
            ("sg", lambda m, k, g, d: sample_sg(m, k, 4, g, spatial_dims=d)),
            ("sag", lambda m, k, g, d: sample_sag(m, k, 4, g, spatial_dims=d))]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_allocate_counts_uses_largest_remainder():
    # quotas 3.5, 2.1, 1.4, 0 -> floors 3, 2, 1 and the one left over goes to the largest remainder
    assert allocate_counts(torch.tensor([5, 3, 2, 0]), 7).tolist() == [4, 2, 1, 0]
    # equal remainders: lower group index first
    assert allocate_counts(torch.tensor([1, 1, 1]), 2).tolist() == [1, 1, 0]


def test_allocate_counts_is_proportional_and_exact():
    counts = torch.randint(0, 50, (40,), generator=gen())
    for k in (1, 7, 256, 5000):
        alloc = allocate_counts(counts, k)
        assert int(alloc.sum()) == k
        quota = counts.double() * k / counts.sum()
        assert bool(((alloc - quota).abs() < 1).all())
        assert bool((alloc[counts == 0] == 0).all())


def test_allocate_counts_of_nothing_is_zero():
    assert allocate_counts(torch.zeros(4, dtype=torch.long), 5).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("name,fn", SAMPLERS)
@pytest.mark.parametrize("shape,dims", [((20, 24), None), ((3, 16, 16), 2), ((2, 6, 9, 10), 3)])
@pytest.mark.parametrize("k", [5, 64, 1000])
def test_samplers_return_exactly_k_valid_candidates(name, fn, shape, dims, k):
    mask = torch.rand(shape, generator=gen(1)) < 0.3
    indices = fn(mask, k, gen(2), dims)
    assert indices.shape == (k,) and indices.dtype == torch.long
    assert bool(mask.flatten()[indices].all())


@pytest.mark.parametrize("name,fn", SAMPLERS[:2])
def test_ns_and_sg_do_not_repeat_candidates_while_there_are_enough(name, fn):
    mask = torch.rand(4, 16, 16, generator=gen(3)) < 0.5
    n = int(mask.sum())
    assert len(set(fn(mask, n, gen(4), 2).tolist())) == n
    assert len(set(fn(mask, n // 3, gen(4), 2).tolist())) == n // 3


@pytest.mark.parametrize("name,fn", SAMPLERS)
def test_samplers_return_nothing_without_candidates(name, fn):
    assert fn(torch.zeros(2, 8, 8, dtype=torch.bool), 10, gen(), 2).numel() == 0


def test_sg_allocates_draws_to_cells_in_proportion_to_their_candidates():
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[0, :4, :4] = True  # 16 candidates in cell 0 of image 0
    mask[0, 8:, 8:] = True  # 64 candidates in cells 10, 11, 14, 15 of image 0
    mask[1, 4:8, :] = True  # 64 candidates in cells 4..7 of image 1
    layout = GridLayout.of(tuple(mask.shape), 4, 2)
    every = torch.arange(mask.numel())
    counts = torch.bincount(layout.group_of(every)[mask.flatten()], minlength=32)
    indices = sample_sg(mask, 50, 4, gen(), spatial_dims=2)
    drawn = torch.bincount(layout.group_of(indices), minlength=32)
    assert torch.equal(drawn, allocate_counts(counts, 50))


def test_sag_pairs_are_reflections_through_the_cell_centre_when_candidates_are_dense():
    mask = torch.ones(12, 12, dtype=torch.bool)  # 3 x 3 cells of 4 x 4 pixels (grid 3)
    indices = sample_sag(mask, 36, grid=3, generator=gen())  # 4 draws per cell: 2 + 2 mirrored
    layout = GridLayout.of((12, 12), 3, None)
    groups = layout.group_of(indices)
    y, x = layout.coords(indices)
    for cell in range(9):
        members = groups == cell
        cy, cx = divmod(cell, 3)
        # each reflected pair averages to the cell centre (4 * c + 1.5), so the cell mean does
        assert float(y[members].double().mean()) == 4 * cy + 1.5
        assert float(x[members].double().mean()) == 4 * cx + 1.5
    reflected = set(layout.reflect(indices).tolist())
    assert reflected == set(indices.tolist())


def test_reflection_stays_in_the_cell_and_is_an_involution():
    layout = GridLayout.of((3, 10, 7, 9), 4, 3)
    every = torch.arange(3 * 10 * 7 * 9)
    mirrored = layout.reflect(every)
    assert torch.equal(layout.group_of(mirrored), layout.group_of(every))
    assert torch.equal(layout.reflect(mirrored), every)


def test_sag_snaps_reflections_to_candidates_of_the_same_cell():
    mask = torch.rand(2, 16, 16, generator=gen(5)) < 0.15
    layout = GridLayout.of(tuple(mask.shape), 4, 2)
    counts = torch.bincount(layout.group_of(torch.arange(mask.numel()))[mask.flatten()],
                            minlength=32)
    indices = sample_sag(mask, 200, 4, gen(6), spatial_dims=2)
    assert bool(mask.flatten()[indices].all())
    assert torch.equal(torch.bincount(layout.group_of(indices), minlength=32),
                       allocate_counts(counts, 200))


def _estimates(sampler: str, mask, values, k: int, repeats: int) -> torch.Tensor:
    g = gen(7)
    return torch.stack([values.flatten()[sample(sampler, mask, k, 4, g)].mean()
                        for _ in range(repeats)])


def test_sg_and_sag_estimate_a_group_dependent_mean_with_lower_variance_than_ns():
    # h = a smooth ramp across the image (its mean differs by cell) + small pixel noise
    g = gen(8)
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    values = (y + 2 * x) / 32 + 0.1 * torch.randn(32, 32, generator=g)
    mask = torch.rand(32, 32, generator=g) < 0.6
    variance = {s: float(_estimates(s, mask, values, 32, 300).var()) for s in ("ns", "sg", "sag")}
    assert variance["sg"] < 0.5 * variance["ns"]
    assert variance["sag"] < 0.5 * variance["ns"]
    # all three are (nearly) unbiased
    truth = float(values[mask].mean())
    for s in ("ns", "sg", "sag"):
        assert abs(float(_estimates(s, mask, values, 32, 300).mean()) - truth) < 0.05


def test_bank_draws_are_valid_and_stratified_per_row():
    tags = torch.tensor([[0] * 60 + [1] * 30 + [3] * 10 + [2] * 10,
                         [2] * 50 + [0] * 60])
    sizes = torch.tensor([100, 50])  # row 0 ignores its last 10 slots, row 1 its last 60
    draw = sample_bank(tags, sizes, 4, 20, True, gen())
    assert draw.slots.shape == (2, 20)
    assert torch.bincount(tags[0, draw.slots[0]], minlength=4).tolist() == [12, 6, 0, 2]
    assert draw.alloc.tolist() == [[12, 6, 0, 2], [0, 0, 20, 0]]
    assert bool((draw.slots < sizes[:, None]).all())
    uniform = sample_bank(tags, sizes, 4, 20, False, gen())
    assert bool((uniform.slots < sizes[:, None]).all()) and uniform.alloc.tolist() == [[20], [20]]


def test_an_empty_bank_gives_no_allocation():
    draw = sample_bank(torch.zeros(1, 8, dtype=torch.long), torch.tensor([0]), 4, 5, True, gen())
    assert draw.alloc.tolist() == [[0, 0, 0, 0]]


def test_pool_draws_follow_the_pools_groups():
    alloc = torch.tensor([[6, 3, 0, 1]])  # pool: 6 entries of group 0, then 3, then 1
    positions = sample_pool(alloc, 10, 4, gen())
    assert positions.shape == (1, 4, 10)
    group = torch.tensor([0] * 6 + [1] * 3 + [3])
    for row in positions[0]:
        assert torch.bincount(group[row], minlength=4).tolist() == [6, 3, 0, 1]


@pytest.mark.parametrize("sampler", ["ns", "sg", "sag"])
def test_rows_give_min_k_distinct_valid_draws_first_then_padding(sampler):
    masks = torch.zeros(3, 2, 8, 8, dtype=torch.bool)
    masks[0, :, :4] = True  # 64 candidates
    masks[1, 0, 2, 3] = masks[1, 1, 5, 6] = True  # 2 candidates
    indices, valid = draw_rows(sampler, masks, 10, 4, gen(), spatial_dims=2)
    assert indices.shape == valid.shape == (3, 10)
    assert valid.sum(1).tolist() == [10, 2, 0]
    assert bool((valid == (torch.arange(10) < valid.sum(1, keepdim=True))).all())
    for row, mask in enumerate(masks):
        picked = indices[row][valid[row]]
        assert bool(mask.flatten()[picked].all())
        if sampler != "sag":  # SAG's reflections may coincide with their partners
            assert len(set(picked.tolist())) == len(picked)
