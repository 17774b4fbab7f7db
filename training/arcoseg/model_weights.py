"""model.safetensors read safely: pickles refused (by content, not by name), the SHA-256 recorded
in model.json checked on the very bytes parsed, and the tensors checked against the network
(keys, shapes) and for NaN/infinite values. Every refusal is a ModelFileError naming the file
and what to do."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import safetensors.torch
import torch

from arcoseg.errors import ModelFileError
from arcoseg.networks import NetworkConfig, SegmentationModel, build_model

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".bin")
PICKLE_ADVICE = ("Pickle checkpoints (.pt/.pth/.ckpt) are not loaded, for safety: unpickling can "
                  "run arbitrary code. Convert a checkpoint you trust in your own script "
                  "(torch.load(path, weights_only=True), then arcoseg.modelfile.save_model).")

def check_finite(tensors: Mapping[str, torch.Tensor], where: str, remedy: str) -> None:
    """ModelFileError naming the tensors that hold NaN or infinite values, if any."""
    bad = [name for name, t in tensors.items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ModelFileError(f"{where} hold NaN or infinite values in {len(bad)} tensor(s) "
                             f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}). {remedy}")


def read_weights(path: Path, expected_sha256: str) -> dict[str, torch.Tensor]:
    """Parse the weights, refusing pickles and files whose SHA-256 differs from model.json.

    The bytes are read once, so the checked bytes are the parsed bytes.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ModelFileError(f"Cannot read {path}: {err.strerror or err}.") from err
    kind = _pickle_kind(data)
    if kind:
        raise ModelFileError(f"{path} is {kind}, not a safetensors file; it was not loaded. "
                             f"{PICKLE_ADVICE}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise ModelFileError(f"{path} is corrupt or was modified after saving: its SHA-256 "
                             f"{digest[:12]}... differs from {expected_sha256[:12]}... recorded "
                             "in model.json. Copy the model folder again from its source.")
    try:
        return safetensors.torch.load(data)
    except Exception as err:  # safetensors raises its own (Rust) error types
        raise ModelFileError(f"{path} is not a valid safetensors file ({err}). Copy the model "
                             "folder again from its source.") from err


def _pickle_kind(data: bytes) -> str | None:
    """'a pickle' / 'a torch.save checkpoint' when `data` starts like one, else None."""
    header_len = int.from_bytes(data[:8], "little")
    if len(data) >= 9 and data[8:9] == b"{" and 8 + header_len <= len(data):
        return None  # a safetensors header: 8-byte length, then a JSON object
    if data.startswith(b"PK\x03\x04"):
        return "a zip archive (the torch.save checkpoint format, which contains a pickle)"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle (a legacy torch.save checkpoint or similar)"
    return None


def meta_model(config: NetworkConfig) -> SegmentationModel:
    """The network of `config` on the meta device (shapes only, no memory, no init cost)."""
    with torch.device("meta"):
        return build_model(config)


def check_state_dict(tensors: Mapping[str, torch.Tensor], config: NetworkConfig,
                      where: str) -> None:
    """ModelFileError unless `tensors` has exactly the keys and shapes of `config`'s network."""
    expected = meta_model(config).state_dict()
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    mismatched = [f"{k} {tuple(tensors[k].shape)} instead of {tuple(v.shape)}"
                  for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    problems = [f"{label} {len(items)} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
                for label, items in (("missing", missing), ("unexpected", unexpected),
                                     ("wrong shape", mismatched)) if items]
    if problems:
        raise ModelFileError(f"{where} do not fit the network described in model.json "
                             f"({config.to_dict()}): {'; '.join(problems)}. The weights and the "
                             "network settings do not come from the same model.")
