"""Model folder = `model.safetensors` (weights) + `model.json` (network, classes, plan, provenance).

Loading never unpickles anything: weights are parsed by safetensors only, after a check that the
file is not a pickle / `torch.save` checkpoint and that its SHA-256 matches the one in model.json
(`model_weights`).
Saving stages both files in a temporary sibling folder, then moves them in; a previous model at
the same path survives any failure of the save (see `save_model`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import safetensors.torch
import torch
from torch import nn

from arcoseg import __version__
from arcoseg.constants import METADATA_FILE, MODEL_FILES, WEIGHTS_FILE
from arcoseg.data.plan import Plan
from arcoseg.errors import DeviceError, ModelFileError, OutputError
from arcoseg.fileutil import make_temp_dir
from arcoseg.model_metadata import FORMAT_VERSION, ModelMetadata
from arcoseg.model_weights import (PICKLE_ADVICE, PICKLE_SUFFIXES, check_finite, check_state_dict,
                                   meta_model, read_weights)
from arcoseg.networks import SegmentationModel, build_model
from arcoseg.progress import to_jsonable
from arcoseg.tempfiles import remove_stale_siblings, sibling_temp_prefix


def save_model(model_dir: str | os.PathLike, model: SegmentationModel | Mapping[str, torch.Tensor],
               metadata: ModelMetadata) -> ModelMetadata:
    """Write model.safetensors + model.json into `model_dir`; returns the metadata as written.

    `model` is a model or a state dict (e.g. the EMA teacher's); its weights must fit
    `metadata.network`. `weights_sha256` is computed; `arcoseg_version` and `created` are added
    to the provenance unless given. Both files are written into a temporary sibling folder first.
    If `model_dir` is absent or holds nothing but a model, that folder is swapped in whole.
    Otherwise (e.g. a training run folder) only the two files are replaced and other content is
    left alone; if that is interrupted, the previous files are put back (a hard crash between the
    two renames leaves a pair that the checksum check refuses, never a silently mixed model).
    """
    dest = Path(model_dir)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
    check_state_dict(tensors, metadata.network_config, "The weights to save")
    check_finite(tensors, "The weights to save", "Training diverged: train again with a lower "
                  "--lr (or another --seed).")
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest} exists and is a file; give a folder path for the model.")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_siblings(dest)  # left by a killed run
        staging = make_temp_dir(dest.parent, prefix=sibling_temp_prefix(dest))
    except OSError as err:
        raise OutputError(f"Cannot write model folder {dest}: {err.strerror or err}. "
                          "Choose a writable location.") from err
    try:
        data = safetensors.torch.save(tensors, metadata={"format": "pt"})
        (staging / WEIGHTS_FILE).write_bytes(data)
        provenance = {"arcoseg_version": __version__,
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      **metadata.provenance}
        written = dataclasses.replace(metadata, provenance=provenance,
                                      weights_sha256=hashlib.sha256(data).hexdigest(),
                                      format_version=FORMAT_VERSION)
        text = json.dumps(to_jsonable(written.to_dict()), indent=2, allow_nan=False,
                          default=_json_fallback)
        (staging / METADATA_FILE).write_text(text + "\n", encoding="utf-8")
        if dest.is_dir() and any(p.name not in MODEL_FILES for p in dest.iterdir()):
            _replace_files(staging, dest)
        else:
            _swap_folder(staging, dest)
    except OSError as err:
        raise OutputError(f"Cannot write model folder {dest}: {err.strerror or err}. "
                          "Choose a writable location with free space.") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone after a folder swap
    return written


def _json_fallback(value: Any) -> Any:
    """JSON form of values json does not know (arrays -> lists, paths etc. -> strings)."""
    return to_jsonable(value.tolist()) if hasattr(value, "tolist") else str(value)


def _swap_folder(new: Path, dest: Path) -> None:
    """Rename folder `new` to `dest`; an existing `dest` is set aside until that succeeded."""
    if not dest.exists():
        os.rename(new, dest)
        return
    old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
    os.rename(dest, old)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _replace_files(new: Path, dest: Path) -> None:
    """Move the model files of `new` into `dest`, weights first; restore the old ones on failure."""
    tag = uuid.uuid4().hex[:8]
    aside = {name: dest / f".{name}.{tag}.old" for name in MODEL_FILES}
    try:
        for name in MODEL_FILES:
            if (dest / name).exists():
                os.rename(dest / name, aside[name])
            os.rename(new / name, dest / name)
    except BaseException:
        for name in MODEL_FILES:
            if aside[name].exists():
                os.replace(aside[name], dest / name)
            elif not (new / name).exists():  # moved in without an old one to restore
                (dest / name).unlink(missing_ok=True)
        raise
    for path in aside.values():
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- load


def load_metadata(model_dir: str | os.PathLike) -> ModelMetadata:
    """Read and validate model.json of a model folder (or of model.json / model.safetensors)."""
    return _read_metadata(_resolve_model_dir(model_dir))


def load_model(model_dir: str | os.PathLike,
               device: str | torch.device = "cpu") -> tuple[SegmentationModel, ModelMetadata]:
    """Load a model folder safely (no unpickling); the model is in eval mode on `device`."""
    metadata, tensors = _read_verified(_resolve_model_dir(model_dir))
    model = build_model(metadata.network_config)
    model.load_state_dict(tensors)
    model.eval()
    try:
        model.to(device)
    except (RuntimeError, AssertionError, ValueError) as err:
        raise DeviceError(f"Cannot put the model on device {device!r}: {err}. "
                          "Choose an available device, e.g. 'cpu'.") from err
    return model, metadata


def model_info(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Summary of a model folder (weights are verified, not kept)."""
    folder = _resolve_model_dir(model_dir)
    metadata, _ = _read_verified(folder)
    network = metadata.network_config
    return {
        "path": str(folder),
        "format_version": metadata.format_version,
        "arch": network.arch,
        "spatial_dims": network.spatial_dims,
        "in_channels": network.in_channels,
        "classes": metadata.classes,
        "head_dim": network.head_dim,
        "head_stride": network.head_stride,
        "parameters": sum(p.numel() for p in meta_model(network).parameters()),
        "weights_bytes": (folder / WEIGHTS_FILE).stat().st_size,
        "weights_sha256": metadata.weights_sha256,
        "plan": metadata.plan,
        "provenance": metadata.provenance,
    }


def segmentation_plan(metadata: ModelMetadata, model_dir: str | os.PathLike) -> Any:
    """The model's preprocessing plan (`data.plan.Plan`); ModelFileError naming its
    model.json if it has none (`check_has_plan`)."""
    check_has_plan(metadata.plan, str(Path(model_dir) / METADATA_FILE))
    return Plan.from_dict(metadata.plan)


def check_has_plan(plan: Mapping[str, Any], where: str) -> None:
    """ModelFileError naming `where` (a model.json) if `plan` is empty: a file written by hand
    or by another program cannot segment."""
    if not plan:
        raise ModelFileError(f"{where} has an empty 'plan' (the preprocessing: spacing, patch, "
                             "normalisation), so the model cannot segment; models written by "
                             "arcoseg train and adapt have one.")


def check_classes(metadata: ModelMetadata, expected_names: Sequence[str], context: str) -> None:
    """ModelFileError unless the model's class names are `expected_names` (same order)."""
    if metadata.class_names != list(expected_names):
        raise ModelFileError(f"{context}: the model's classes {metadata.class_names} differ from "
                             f"the expected {list(expected_names)}. Use a model trained for "
                             "these classes (same names, same order).")


def _resolve_model_dir(path: str | os.PathLike) -> Path:
    """The model folder `path` names; ModelFileError if it is not a complete one."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"Model folder {path} does not exist. Give the folder that holds "
                             f"{METADATA_FILE} and {WEIGHTS_FILE}.")
    if path.is_file():
        if path.name in MODEL_FILES:
            path = path.parent
        elif path.suffix.lower() in PICKLE_SUFFIXES:
            raise ModelFileError(f"{path} is a pickle checkpoint, not an ARCOSegment model "
                                 f"folder. {PICKLE_ADVICE}")
        else:
            raise ModelFileError(f"{path} is a file, not a model folder. Give the folder that "
                                 f"holds {METADATA_FILE} and {WEIGHTS_FILE}.")
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        message = f"{path} is not an ARCOSegment model folder: {', '.join(missing)} missing."
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            message += f" It holds {', '.join(pickles[:5])}. {PICKLE_ADVICE}"
        raise ModelFileError(message)
    return path


def _read_metadata(folder: Path) -> ModelMetadata:
    path = folder / METADATA_FILE
    try:
        # utf-8-sig: a file saved by an editor that writes a byte-order mark (Notepad) reads too
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFileError(f"Cannot read {path}: {err}.") from err
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path} is not valid JSON ({err}). Restore the file from the "
                             "original model folder.") from err
    try:
        return ModelMetadata.from_dict(data)
    except ModelFileError as err:
        raise ModelFileError(f"{path}: {err}") from err


def _read_verified(folder: Path) -> tuple[ModelMetadata, dict[str, torch.Tensor]]:
    """Metadata and weights of a model folder, checked against each other."""
    metadata = _read_metadata(folder)
    path = folder / WEIGHTS_FILE
    tensors = read_weights(path, metadata.weights_sha256)
    check_state_dict(tensors, metadata.network_config, f"The weights in {path}")
    check_finite(tensors, f"The weights in {path}", "The model is corrupt (or its training "
                  "diverged) and would give a wrong segmentation: use another version or "
                  "copy the model again from its source.")
    return metadata, tensors
