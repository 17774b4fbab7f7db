"""CutMix plans keep images, labels and confidences aligned; mixing modes; intensity jitter."""

import pytest
import torch

from arcoseg.arco.cutmix import MIX_MODES, cutmix_box, mixing_plan


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pool(n: int, shape) -> torch.Tensor:
    """Pool image k filled with the value k, so a mixed pixel shows where it came from."""
    return torch.arange(float(n)).view(n, *([1] * len(shape))).expand(n, *shape)


@pytest.mark.parametrize("spatial", [(16, 20), (6, 8, 10)])
@pytest.mark.parametrize("mode", MIX_MODES)
def test_one_plan_mixes_images_labels_and_confidences_alike(spatial, mode):
    plan = mixing_plan(3, 3, spatial, mode, gen())
    labels = torch.randint(0, 5, (6, *spatial), generator=gen(1))
    images, confidence = plan.apply(labels[:, None].float()), plan.apply(labels.float() / 10)
    mixed = plan.apply(labels)
    assert torch.equal(images[:, 0], mixed.float()) and torch.equal(confidence, mixed / 10)
    assert torch.equal(mixed, torch.where(plan.box, labels[plan.partner], labels[plan.base]))


def test_unlabelled_mode_mixes_unlabelled_images_among_themselves_only():
    plan = mixing_plan(2, 4, (16, 16), "unlabelled", gen())
    source = plan.apply(pool(6, (16, 16)))
    assert torch.equal(source[:2], pool(2, (16, 16)))  # labelled images untouched
    assert bool((source[2:] >= 2).all())
    assert not bool((plan.partner[2:] == plan.base[2:]).any())


def test_bidirectional_mode_pastes_unlabelled_into_labelled_and_back():
    plan = mixing_plan(2, 2, (16, 16), "bidirectional", gen())
    source = plan.apply(pool(4, (16, 16)))
    for k in range(4):
        inside = source[k][plan.box[k]]
        outside = source[k][~plan.box[k]]
        labelled_base = k < 2
        assert bool(((inside >= 2) if labelled_base else (inside < 2)).all())
        assert bool(((outside < 2) if labelled_base else (outside >= 2)).all())


def test_none_mode_leaves_every_image_as_it_is():
    plan = mixing_plan(2, 2, (8, 8), "none", gen())
    assert not bool(plan.box.any())
    assert torch.equal(plan.apply(pool(4, (8, 8))), pool(4, (8, 8)))


def test_box_covers_about_half_the_area_2d():
    box = cutmix_box(5, (32, 40), gen())
    assert box.shape == (5, 32, 40)
    assert torch.allclose(box.float().mean((1, 2)), torch.full((5,), 0.5), atol=0.02)


def test_box_3d_is_half_the_in_plane_area_over_a_slab_of_half_the_slices():
    box = cutmix_box(2, (10, 32, 32), gen())
    slices = box.any(dim=(2, 3))
    assert slices.sum(1).tolist() == [5, 5]
    for b in range(2):
        in_plane = box[b][slices[b]].float().mean((1, 2))
        assert torch.allclose(in_plane, torch.full_like(in_plane, 0.5), atol=0.02)
        assert bool((box[b][slices[b]] == box[b][slices[b]][0]).all())  # same box on each slice


def test_mixing_is_reproducible_with_the_generator():
    first = mixing_plan(4, 4, (12, 12), "unlabelled", gen(3))
    second = mixing_plan(4, 4, (12, 12), "unlabelled", gen(3))
    assert torch.equal(first.box, second.box) and torch.equal(first.partner, second.partner)


@pytest.mark.parametrize("mode", ["unlabelled", "bidirectional"])
def test_on_a_coarser_grid_each_point_comes_from_the_image_its_nearest_pixel_comes_from(mode):
    plan = mixing_plan(2, 2, (16, 12), mode, gen(4))
    coarse = plan.apply(pool(4, (4, 6)))  # e.g. embeddings at stride (4, 2)
    fine = plan.apply(pool(4, (16, 12)))
    assert torch.equal(coarse, fine[:, ::4, ::2])
    channels = plan.apply(pool(4, (3, 4, 6)))  # (P, C, *grid)
    assert torch.equal(channels, coarse[:, None].expand(-1, 3, -1, -1))
