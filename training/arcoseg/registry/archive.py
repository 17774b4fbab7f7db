"""Model files in and out of the registry: copying a folder in, reading and writing exported
.zip archives, and which files an export holds."""

from __future__ import annotations

import os
import shutil
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from arcoseg.constants import MODEL_FILES
from arcoseg.errors import ModelFileError, OutputError
from arcoseg.fileutil import atomic_path
from arcoseg.tempfiles import remove_stale_siblings, sibling_temp_prefix

# `models export --with-history` adds a trained model folder's training/ history, without the
# checkpoint files (train.resume.CHECKPOINT_STEM: resume state, not history) and hidden ones
# (the run's lock, train.resume.RUN_LOCK)
_HISTORY, _CHECKPOINT_PREFIX = "training", "checkpoint."


def copy_model_files(src: Path, dest: Path) -> None:
    """Copy the two model files of model folder `src` (or of its model.json) into new `dest`."""
    folder = src.parent if src.is_file() else src
    dest.mkdir()
    for name in MODEL_FILES:
        shutil.copyfile(folder / name, dest / name)


def extract_model_zip(archive: Path, dest: Path) -> str:
    """Write the model files of an exported archive (at its top or in one folder) into `dest`;
    return that folder inside the archive ('' or 'name/').

    Only the two model files are read, by name, so nothing else in the archive is written out.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members: dict[str, zipfile.ZipInfo] = {}
            for info in zf.infolist():
                parts = PurePosixPath(info.filename).parts
                if info.is_dir() or len(parts) > 2 or parts[-1] not in MODEL_FILES:
                    continue
                if parts[-1] in members:
                    raise ModelFileError(f"{archive} holds more than one {parts[-1]}; import "
                                         "an archive with one model.")
                members[parts[-1]] = info
            missing = [n for n in MODEL_FILES if n not in members]
            if missing:
                pickled = any(n.endswith(".pkl") for n in zf.namelist())
                raise ModelFileError(
                    f"{archive} is not an exported ARCOSegment model: {', '.join(missing)} "
                    "missing (expected at its top level or in one folder)."
                    + (" It looks like a torch.save checkpoint, which holds a pickle and is "
                       "never loaded, for safety." if pickled else ""))
            folders = {str(PurePosixPath(info.filename).parent) for info in members.values()}
            if len(folders) > 1:  # two halves of different models, perhaps
                raise ModelFileError(f"{archive} holds {' and '.join(sorted(members))} in "
                                     f"different folders ({', '.join(sorted(folders))}); an "
                                     "exported model has both in one folder.")
            dest.mkdir()
            for name, info in members.items():
                (dest / name).write_bytes(zf.read(info))
            return members[MODEL_FILES[0]].filename[: -len(MODEL_FILES[0])]
    except zipfile.BadZipFile as err:
        raise ModelFileError(f"{archive} is not a valid zip archive ({err}). Export the model "
                             "again.") from err


def export_files(folder: Path, with_history: bool) -> list[PurePosixPath]:
    """The files of model folder `folder` an export holds (relative paths): the model files,
    and with `with_history` the training history but not its checkpoint (resume state)."""
    files = [PurePosixPath(name) for name in sorted(MODEL_FILES)]
    history = folder / _HISTORY
    if with_history and history.is_dir():
        files += sorted(PurePosixPath(p.relative_to(folder).as_posix()) for p in history.rglob("*")
                        if p.is_file() and not p.name.startswith((_CHECKPOINT_PREFIX, ".")))
    return files


def write_model_zip(folder: Path, files: list[PurePosixPath], dest: Path, label: str) -> None:
    """Write `files` of model folder `folder` into archive `dest` (atomically) under `label/`.
    OutputError if `dest` exists (as for a folder: an export never replaces a file)."""
    if dest.exists() or dest.is_symlink():
        raise OutputError(f"{dest} already exists. Choose a new file name or remove it.")
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for path in files:
            # weights hardly compress, so they are stored as is (faster); the rest is text/PNG
            method = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
            zf.write(folder / path, f"{label}/{path}", compress_type=method)


def write_model_folder(folder: Path, files: list[PurePosixPath], dest: Path) -> None:
    """Copy `files` of model folder `folder` to the new folder `dest`, all or nothing (a
    temporary sibling renamed at the end). OutputError if `dest` exists or cannot be written."""
    if dest.exists():
        raise OutputError(f"{dest} already exists. Choose a new folder name or remove it.")
    remove_stale_siblings(dest)  # left by a killed run
    tmp = dest.with_name(f"{sibling_temp_prefix(dest)}{uuid.uuid4().hex[:8]}.tmp")
    try:
        for path in files:
            (tmp / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / path, tmp / path)
        os.rename(tmp, dest)
    except OSError as err:
        raise OutputError(f"Cannot export to {dest}: {err.strerror or err}. Choose a writable "
                          "location with free space.") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
