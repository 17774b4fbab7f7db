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


def test_a_checkpoint_torn_between_its_two_files_is_refused(tmp_path):
    """A hunter's finding (HIGH): killed (or Ctrl-C'd twice) between the two renames, the new
    tensors lay beside the old JSON; --resume trained on from a mix of two iterations, exit 0."""
    save_checkpoint(tmp_path / "ckpt", {"w": torch.zeros(3), "iteration": 4})
    old_json = (tmp_path / "ckpt.json").read_text()
    save_checkpoint(tmp_path / "ckpt", {"w": torch.ones(3), "iteration": 8})
    (tmp_path / "ckpt.json").write_text(old_json)  # the JSON of iteration 8 never written
    with pytest.raises(ArcosegError, match="is torn: ckpt.safetensors and ckpt.json come from "
                                           "two different saves"):
        load_checkpoint(tmp_path / "ckpt")


def test_a_checkpoint_saved_before_the_pairing_id_still_loads(tmp_path):
    from safetensors.torch import save_file

    tensors, skeleton = split_state({"w": torch.arange(3.0), "iteration": 2})
    save_file(tensors, str(tmp_path / "ckpt.safetensors"))
    (tmp_path / "ckpt.json").write_text(json.dumps(skeleton))
    back = load_checkpoint(tmp_path / "ckpt")
    assert back["iteration"] == 2 and torch.equal(back["w"], torch.arange(3.0))
