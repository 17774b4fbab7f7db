"""Pickle-free checkpoints: nested state dicts split into safetensors tensors + a JSON skeleton."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from arcoseg.errors import ArcosegError
from arcoseg.fileutil import atomic_path, write_text_atomic

_TENSOR_TAG = "__tensor__"
_PAIR = "__pair__"  # the id shared by the two files of one save
# what to do with a checkpoint that cannot be resumed (its folder may hold a model from a
# validation: deleting only the checkpoint files made a new run there refuse "holds a model")
_AGAIN = "Train again without --resume into another --out (or delete the whole folder)."


def split_state(state: Any, prefix: str = "s") -> tuple[dict[str, torch.Tensor], Any]:
    """Replace every tensor in a nested dict/list structure by a reference; return both parts."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().cpu().contiguous()
            return {_TENSOR_TAG: key}
        if isinstance(value, dict):
            return {"__dict__": [[_key_json(k), walk(v, f"{key}.{i}")]
                                 for i, (k, v) in enumerate(value.items())]}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(value)]
        return value

    return tensors, walk(state, prefix)


def join_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Inverse of `split_state`."""
    if isinstance(skeleton, dict) and _TENSOR_TAG in skeleton:
        return tensors[skeleton[_TENSOR_TAG]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {_key_back(k): join_state(tensors, v) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [join_state(tensors, v) for v in skeleton]
    return skeleton


def _key_json(key: Any) -> Any:
    # Optimizer state dicts key parameters by int; JSON object keys would turn them into str.
    return {"int": key} if isinstance(key, int) else key


def _key_back(key: Any) -> Any:
    return key["int"] if isinstance(key, dict) else key


def save_checkpoint(path_stem: Path, state: dict[str, Any]) -> None:
    """Write `<stem>.safetensors` + `<stem>.json` atomically (the JSON, written last, commits it).

    Both carry one random pairing id: a run killed (or Ctrl-C'd twice) between the two renames
    leaves the new tensors beside the old JSON, which `load_checkpoint` refuses; resumed, they
    trained on from a mix of two iterations with exit 0."""
    tensors, skeleton = split_state(state)
    pair = uuid.uuid4().hex
    with atomic_path(path_stem.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp), metadata={_PAIR: pair})
    write_text_atomic(path_stem.with_suffix(".json"), json.dumps({**skeleton, _PAIR: pair}))


def load_checkpoint(path_stem: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (never unpickles)."""
    json_path, tensor_path = path_stem.with_suffix(".json"), path_stem.with_suffix(".safetensors")
    if not json_path.is_file() or not tensor_path.is_file():
        raise ArcosegError(f"No checkpoint to resume at {json_path.parent}: expected "
                           f"{json_path.name} and {tensor_path.name}. Start without --resume.")
    try:
        skeleton = json.loads(json_path.read_text())
    except (OSError, ValueError) as err:
        raise ArcosegError(f"Checkpoint {json_path} is damaged ({err}). {_AGAIN}") from err
    try:
        with safe_open(str(tensor_path), "pt") as f:
            pair = (f.metadata() or {}).get(_PAIR)
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise ArcosegError(f"Checkpoint {tensor_path} is damaged ({err}). {_AGAIN}") from err
    if isinstance(skeleton, dict) and _PAIR in skeleton and skeleton[_PAIR] != pair:
        raise ArcosegError(f"The checkpoint in {json_path.parent} is torn: {tensor_path.name} and "
                           f"{json_path.name} come from two different saves (the run was stopped "
                           f"while saving, e.g. killed or interrupted twice). Resuming would mix "
                           f"two iterations. {_AGAIN}")
    try:
        return join_state(tensors, skeleton)
    except (ValueError, KeyError, TypeError) as err:
        raise ArcosegError(f"Checkpoint {json_path} is damaged ({err}). {_AGAIN}") from err


def checkpoint_entry(path_stem: Path, key: str) -> Any:
    """The tensor-free entry `key` of a checkpoint, read from its JSON part only; None when
    the checkpoint or the entry is missing or unreadable."""
    try:
        skeleton = json.loads(path_stem.with_suffix(".json").read_text())
        return join_state({}, dict(skeleton["__dict__"])[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None
