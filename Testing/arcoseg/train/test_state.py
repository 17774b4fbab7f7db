"""Pickle-free checkpoints round-trip nested optimizer and RNG state exactly."""

import json

import pytest
import torch

from arcoseg.errors import ArcosegError
from arcoseg.train.state import join_state, load_checkpoint, save_checkpoint, split_state


def _optimizer_with_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return opt


def test_split_and_join_restore_tensors_int_keys_and_plain_values():
    state = {"opt": _optimizer_with_state().state_dict(), "rng": torch.get_rng_state(),
             "it": 7, "names": ["a", "b"], "nested": {"x": None}}
    tensors, skeleton = split_state(state)
    back = join_state(tensors, json.loads(json.dumps(skeleton)))
    assert back["it"] == 7 and back["names"] == ["a", "b"] and back["nested"] == {"x": None}
    assert torch.equal(back["rng"], state["rng"])
    assert set(back["opt"]["state"]) == {0, 1}
    for key in (0, 1):
        assert torch.equal(back["opt"]["state"][key]["momentum_buffer"],
                           state["opt"]["state"][key]["momentum_buffer"])


def test_checkpoint_files_round_trip(tmp_path):
    state = {"w": torch.arange(5.0), "meta": {"iteration": 3}}
    save_checkpoint(tmp_path / "ckpt", state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.safetensors"]
    back = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(back["w"], state["w"]) and back["meta"] == {"iteration": 3}


def test_missing_checkpoint_says_to_start_without_resume(tmp_path):
    with pytest.raises(ArcosegError, match="without --resume"):
        load_checkpoint(tmp_path / "ckpt")


def test_damaged_checkpoint_is_refused(tmp_path):
    save_checkpoint(tmp_path / "ckpt", {"w": torch.zeros(3)})
    (tmp_path / "ckpt.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArcosegError, match="damaged"):
        load_checkpoint(tmp_path / "ckpt")
