"""CutMix keeps image, pseudo-labels and confidences aligned; intensity jitter."""

import torch

from arcoseg.arco.cutmix import cutmix, cutmix_box, intensity_jitter, mix_like


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def labelled_batch(shape):
    labels = torch.randint(0, 5, shape, generator=gen(1))
    return labels[:, None].float(), labels, labels.float() / 10


def test_cutmix_keeps_images_pseudo_labels_and_confidences_aligned_2d():
    images, pseudo, confidence = labelled_batch((4, 16, 20))
    out = cutmix(images, pseudo, confidence, gen())
    assert torch.equal(out.images[:, 0], out.pseudo.float())
    assert torch.equal(out.confidence, out.pseudo.float() / 10)
    assert torch.equal(out.pseudo, torch.where(out.box, pseudo[out.partner], pseudo))


def test_cutmix_keeps_alignment_3d():
    images, pseudo, confidence = labelled_batch((3, 6, 8, 10))
    out = cutmix(images, pseudo, confidence, gen())
    assert torch.equal(out.images[:, 0], out.pseudo.float())
    assert torch.equal(out.confidence, out.pseudo.float() / 10)


def test_each_image_borrows_from_another_image():
    for batch in (2, 3, 8):
        _, partner = cutmix_box(batch, (8, 8), gen(batch))
        assert not bool((partner == torch.arange(batch)).any())
        assert sorted(partner.tolist()) == list(range(batch))


def test_box_covers_about_half_the_area_2d():
    box, _ = cutmix_box(5, (32, 40), gen())
    assert box.shape == (5, 32, 40)
    assert torch.allclose(box.float().mean((1, 2)), torch.full((5,), 0.5), atol=0.02)


def test_box_3d_is_half_the_in_plane_area_over_a_slab_of_half_the_slices():
    box, _ = cutmix_box(2, (10, 32, 32), gen())
    slices = box.any(dim=(2, 3))
    assert slices.sum(1).tolist() == [5, 5]
    for b in range(2):
        in_plane = box[b][slices[b]].float().mean((1, 2))
        assert torch.allclose(in_plane, torch.full_like(in_plane, 0.5), atol=0.02)
        assert bool((box[b][slices[b]] == box[b][slices[b]][0]).all())  # same box on each slice


def test_mix_like_applies_the_same_box_to_any_tensor():
    box, partner = cutmix_box(3, (8, 8), gen())
    values = torch.arange(3.0)[:, None, None].expand(3, 8, 8)
    mixed = mix_like(values, box, partner)
    assert torch.equal(mixed[box], partner[:, None, None].expand(3, 8, 8)[box].float())
    assert torch.equal(mixed[~box], values[~box])


def test_cutmix_is_reproducible_with_the_generator():
    images, pseudo, confidence = labelled_batch((4, 12, 12))
    first = cutmix(images, pseudo, confidence, gen(3))
    second = cutmix(images, pseudo, confidence, gen(3))
    assert torch.equal(first.box, second.box) and torch.equal(first.partner, second.partner)


def test_intensity_jitter_is_a_bounded_per_image_affine_change():
    images = torch.ones(6, 1, 4, 4)
    out = intensity_jitter(images, gen(), strength=0.1)
    per_image = out.flatten(1)
    assert torch.equal(per_image.min(1).values, per_image.max(1).values)
    assert bool(((out - 1).abs() <= 0.2 + 1e-6).all()) and not torch.equal(out, images)
