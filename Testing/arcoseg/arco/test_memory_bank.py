"""Per-class FIFO memory bank and the ring buffer under it."""

import pytest
import torch
from safetensors.torch import load, save

from arcoseg.arco.memory_bank import ClassMemoryBank, RingBuffer


def rows(*values: float) -> torch.Tensor:
    return torch.tensor(values)[:, None].repeat(1, 3)


def test_ring_buffer_keeps_the_newest_entries_oldest_first():
    queue = RingBuffer(4)
    for start in range(0, 10, 3):  # push 0..2, 3..5, 6..8, 9
        queue.push(rows(*range(start, min(start + 3, 10))))
    assert len(queue) == 4
    assert queue.get()[:, 0].tolist() == [6, 7, 8, 9]


def test_ring_buffer_push_larger_than_capacity_keeps_the_last_entries():
    queue = RingBuffer(3)
    queue.push(rows(0, 1, 2, 3, 4), torch.arange(5))
    assert queue.get()[:, 0].tolist() == [2, 3, 4]
    assert queue.get_tags().tolist() == [2, 3, 4]


def test_tags_follow_their_features_through_wrap_around():
    queue = RingBuffer(5)
    for start in range(0, 12, 4):
        values = torch.arange(start, start + 4)
        queue.push(rows(*values.tolist()), values * 10)
    assert queue.get_tags().tolist() == (queue.get()[:, 0] * 10).long().tolist()


def test_ring_buffer_is_empty_before_the_first_push():
    queue = RingBuffer(4)
    assert len(queue) == 0 and queue.get().shape[0] == 0 and queue.get_tags().numel() == 0


def test_ring_buffer_rejects_features_of_another_width():
    queue = RingBuffer(4)
    queue.push(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="width"):
        queue.push(torch.zeros(2, 5))


def test_bank_has_one_fifo_per_class_and_a_larger_background_one():
    bank = ClassMemoryBank(3, dim=3, size=4, background_size=6)
    for c in range(3):
        bank.push(c, rows(*range(10)) + 100 * c)
    assert [bank.count(c) for c in range(3)] == [6, 4, 4]
    assert bank.get(2)[:, 0].tolist() == [206, 207, 208, 209]
    with pytest.raises(ValueError, match="3-d"):
        bank.push(1, torch.zeros(1, 2))


def test_bank_state_round_trips_through_safetensors_and_resumes_exactly():
    bank = ClassMemoryBank(2, size=4, background_size=5)
    bank.push(0, rows(*range(7)), torch.arange(7))
    bank.push(1, rows(1, 2))
    restored = ClassMemoryBank(2, size=4, background_size=5)
    restored.load_state_dict(load(save(bank.state_dict())))
    for target in (bank, restored):
        target.push(0, rows(50, 51))
        target.push(1, rows(60, 61, 62))
    for c in range(2):
        assert torch.equal(restored.get(c), bank.get(c))
        assert torch.equal(restored.get_tags(c), bank.get_tags(c))


def test_empty_bank_state_round_trips():
    restored = ClassMemoryBank(2)
    restored.load_state_dict(load(save(ClassMemoryBank(2).state_dict())))
    assert restored.count(0) == 0 and restored.count(1) == 0


def test_push_rows_appends_only_valid_entries_per_class():
    bank = ClassMemoryBank(2, size=3, background_size=4)
    feats = torch.arange(10.0).view(2, 5, 1).repeat(1, 1, 2)
    valid = torch.tensor([[True, False, True, False, True], [True, True, True, True, True]])
    bank.push_rows(feats, torch.arange(10).view(2, 5), valid)
    assert bank.sizes.tolist() == [3, 3]
    assert bank.get(0)[:, 0].tolist() == [0, 2, 4]
    assert bank.get(1)[:, 0].tolist() == [7, 8, 9]  # the newest 3 of a push larger than the bank
    assert bank.get_tags(1).tolist() == [7, 8, 9]
    bank.push_rows(feats + 100, torch.zeros(2, 5, dtype=torch.long), valid)
    assert bank.get(0)[:, 0].tolist() == [4, 100, 102, 104]  # background: capacity 4
