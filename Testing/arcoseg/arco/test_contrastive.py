"""ARCO contrastive loss: pixel selection, memory-bank negatives and InfoNCE."""

import pytest
import torch
import torch.nn.functional as F

from arcoseg.arco.contrastive import contrastive_loss, negative_similarity, select_pixels
from arcoseg.arco.memory_bank import ClassMemoryBank

K, D = 3, 8


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def scene(batch: int = 2, size: int = 12, classes: int = K):
    """Labels in vertical bands, confident teacher probabilities, embeddings = class one-hots."""
    labels = (torch.arange(size) * classes // size).expand(batch, size, size).clone()
    probs = F.one_hot(labels, K).movedim(-1, 1).float() * 0.7 + 0.1
    clean = F.one_hot(labels, D).movedim(-1, 1).float()
    return labels, probs, clean


def run(z_s, z_t, probs, labels, annotated=None, progress=0.0, sampler="sg", bank=None, **kw):
    annotated = torch.ones_like(labels, dtype=torch.bool) if annotated is None else annotated
    bank = ClassMemoryBank(K, size=500, background_size=500) if bank is None else bank
    selection = select_pixels(z_t, probs, labels, annotated, progress)
    return contrastive_loss(z_s, z_t, selection, bank, sampler, gen(), **kw)


@pytest.mark.parametrize("sampler", ["ns", "sg", "sag"])
def test_well_separated_embeddings_give_a_lower_loss_than_mixed_ones(sampler):
    labels, probs, clean = scene()
    noise = 0.05 * torch.randn(clean.shape, generator=gen(1))
    separated, _ = run(clean + noise, clean + noise, probs, labels, sampler=sampler)
    mixed_student = torch.randn(clean.shape, generator=gen(2))
    mixed, _ = run(mixed_student, clean + noise, probs, labels, sampler=sampler)
    assert float(separated) < float(mixed)


def test_gradients_reach_the_student_embeddings_and_not_the_teacher():
    labels, probs, clean = scene()
    z_s = torch.randn(clean.shape, generator=gen(3), requires_grad=True)
    z_t = (clean + 0.1 * torch.randn(clean.shape, generator=gen(4))).requires_grad_(True)
    loss, diag = run(z_s, z_t, probs, labels)
    loss.backward()
    assert diag["valid_classes"] == K
    assert z_s.grad is not None and float(z_s.grad.abs().sum()) > 0
    assert z_t.grad is None


def test_absent_classes_are_skipped_without_nan():
    labels, probs, clean = scene(classes=2)  # class 2 never appears
    z_s = torch.randn(clean.shape, generator=gen(5), requires_grad=True)
    loss, diag = run(z_s, clean, probs, labels)
    assert torch.isfinite(loss) and diag["valid_classes"] == 2 and int(diag["anchors"][2]) == 0
    loss.backward()
    assert torch.isfinite(z_s.grad).all()


def test_a_single_class_gives_zero_with_a_gradient_path():
    labels, probs, clean = scene(classes=1)
    z_s = torch.randn(clean.shape, generator=gen(6), requires_grad=True)
    loss, diag = run(z_s, clean, probs, labels)
    assert float(loss.detach()) == 0.0 and loss.requires_grad and diag["valid_classes"] == 0
    loss.backward()
    assert float(z_s.grad.abs().sum()) == 0.0


def test_negatives_of_a_class_never_come_from_that_class_and_include_labelled_pixels():
    labels, probs, clean = scene()
    bank = ClassMemoryBank(K, size=500, background_size=500)
    run(clean, clean, probs, labels, bank=bank)  # every pixel annotated (labelled images)
    for c in range(K):
        stored = bank.get(c)
        assert len(stored) > 0
        assert not bool((stored.argmax(1) == c).any())


def test_anchors_per_class_are_capped_at_the_anchor_count():
    labels, probs, clean = scene(batch=2, size=30)  # 600 pixels per class
    _, diag = run(clean, clean, probs, labels, anchors=256)
    assert diag["anchors"].tolist() == [256, 256, 256]
    _, diag = run(clean, clean, probs, labels, anchors=1000)
    assert diag["anchors"].tolist() == [600, 600, 600]


def test_unannotated_pixels_become_anchors_only_while_their_entropy_is_among_the_lowest():
    labels, probs, clean = scene(batch=2, size=30)
    free = torch.zeros_like(labels, dtype=torch.bool)
    _, early = run(clean, clean, probs, labels, annotated=free, progress=0.0, anchors=10000)
    assert int(early["anchors"].sum()) == int(0.2 * labels.numel())
    loss, late = run(clean, clean, probs, labels, annotated=free, progress=1.0)
    assert int(late["anchors"].sum()) == 0 and float(loss) == 0.0


def test_anchors_need_a_teacher_probability_above_0_3():
    labels, probs, clean = scene()
    probs[:, 1] = 0.2  # the teacher doubts class 1 everywhere
    _, diag = run(clean, clean, probs, labels)
    assert int(diag["anchors"][1]) == 0 and int(diag["anchors"][0]) > 0


def test_loss_is_float32_under_bfloat16_autocast():
    labels, probs, clean = scene()
    z_s = torch.randn(clean.shape, generator=gen(7)).bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = run(z_s, clean.bfloat16(), probs.bfloat16(), labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert z_s.grad is not None


def test_negatives_are_pixels_of_other_classes_where_the_class_is_a_confusable_runner_up():
    labels = torch.tensor([[[0, 0, 1, 0]]])  # (B=1, 1, 4)
    probs = torch.tensor([[0.6, 0.3, 0.1],  # label 0, class 1 is the runner-up
                          [0.2, 0.1, 0.7],  # label 0, class 2 on top, class 0 runner-up
                          [0.015, 0.98, 0.005],  # label 1, class 0 runner-up
                          [0.01, 0.985, 0.005]])  # label 0, but p(1) >= 0.97: not confusable
    probs = probs.T.reshape(1, K, 1, 4)
    z = torch.randn(1, D, 1, 4, generator=gen())
    selection = select_pixels(z, probs, labels, torch.ones_like(labels, dtype=torch.bool), 0.0)
    assert selection.negative_mask.int().tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0]]
    assert selection.anchor_mask.int().tolist() == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_each_anchor_gets_its_own_cell_stratified_negatives():
    tags = torch.tensor([0] * 60 + [1] * 30 + [3] * 10 + [2] * 28)  # the last 28 slots are empty
    stored = F.one_hot(tags, D).float()  # an entry's vector says which cell it came from
    queries = F.one_hot(torch.tensor([0, 1, 3] * 20), D).float()
    sizes = torch.tensor([100])
    similarity = negative_similarity(queries[None], stored[None], tags[None], sizes, 4, 20, True,
                                     gen())
    assert similarity.shape == (1, 60, 20)
    # every anchor gets 12 / 6 / 2 negatives from cells 0 / 1 / 3 (60 : 30 : 10 of 20), none
    # from the empty slots
    assert similarity[0].sum(1).tolist() == [12.0, 6.0, 2.0] * 20
    uniform = negative_similarity(queries[None], stored[None], tags[None], sizes, 4, 20, False,
                                  gen())
    assert uniform.shape == (1, 60, 20) and bool(((uniform == 0) | (uniform == 1)).all())
    # queries of cell 2 never meet a negative: cell-2 entries sit in empty slots
    lonely = F.one_hot(torch.full((5,), 2), D).float()
    assert float(negative_similarity(lonely[None], stored[None], tags[None], sizes, 4, 20,
                                     False, gen()).abs().sum()) == 0.0


def test_classes_are_scored_in_one_batch_with_their_own_banks():
    labels, probs, clean = scene()
    bank = ClassMemoryBank(K, size=500, background_size=500)
    _, diag = run(clean, clean, probs, labels, bank=bank, push=7)
    # every class pushed exactly 7 of its own negatives, the anchors capped by the candidates
    assert bank.sizes.tolist() == [7, 7, 7] and int(diag["valid_classes"]) == K
    assert diag["anchors"].tolist() == [96, 96, 96]
