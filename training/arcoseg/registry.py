"""Model registry: named models with immutable versions, an active version each, and rollback.

Layout of the home folder (`$ARCOSEG_HOME`, else `~/.arcoseg`):

    registry.json                         the index (the source of truth; written atomically)
    registry.lock                         inter-process lock taken by every index write
    models/<name>/versions/<id>/          one model folder per version (ids v1, v2, ...)
    staging/<token>/                      versions being written; each holds a `.lock` while its
                                          process lives

A version folder is written in `staging/`, validated, then renamed into `models/` and added to
the index under the lock, so a version is either complete and listed or absent. Nothing ever
writes into a committed version folder: adapting a model makes a new version. Folders the index
does not list (left by a process killed between two steps) are ignored, and their ids are never
reused; staging folders whose process is gone are deleted by the next writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from filelock import FileLock, Timeout

from arcoseg.constants import MODEL_FILES
from arcoseg.errors import ArcosegError, ModelFileError, OutputError
from arcoseg.fileutil import atomic_path, full_suffix, write_text_atomic
from arcoseg.tempfiles import remove_stale_siblings, sibling_temp_prefix

INDEX_VERSION = 1
INDEX_FILE = "registry.json"
LOCK_FILE = "registry.lock"
_STAGING_LOCK = ".lock"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_VERSION = re.compile(r"v([1-9][0-9]*)")
# Provenance fields of model.json copied into the index for `list` (the rest stays in model.json).
_SUMMARY_KEYS = ("method", "dataset", "held_out", "validation")
# `models export --with-history` adds a trained model folder's training/ history, without the
# checkpoint files (train.resume.CHECKPOINT_STEM: resume state, not history)
_HISTORY, _CHECKPOINT_PREFIX = "training", "checkpoint."


class RegistryError(ArcosegError):
    """The registry cannot do what was asked (unknown model, refused removal, busy, damaged)."""


def registry_home() -> Path:
    """`$ARCOSEG_HOME`, else `~/.arcoseg`."""
    env = os.environ.get("ARCOSEG_HOME")
    return Path(env).expanduser() if env else Path.home() / ".arcoseg"


@dataclass(frozen=True)
class VersionRef:
    """One version of a registered model; `str()` gives `name@version`."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass
class StagedVersion:
    """Yielded by `Registry.stage_version`: save the model into `path` (a folder not yet created).

    Set `activate = False` to commit without making the version active (for the first version of
    a model: the model then has no active version until one is activated explicitly). `ref` is set once the version is committed.
    """

    path: Path
    activate: bool = True
    ref: VersionRef | None = field(default=None, init=False)


def check_name(name: str, hint: str = "") -> str:
    """`name` if it is a valid model name, else RegistryError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(f"Invalid model name {name!r}: use 1-100 letters, digits, '.', '_' or "
                            f"'-', not starting with '.' (e.g. 'brain-mri').{hint}")
    return name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _looks_like_path(spec: str) -> bool:
    return any(sep and sep in spec for sep in (os.sep, os.altsep)) or spec.startswith(("~", "."))


class Registry:
    """The model registry in `home` (default `registry_home()`).

    Reads need no lock (the index is replaced atomically); every write holds the registry lock
    for at most `lock_timeout` seconds of waiting, then fails with RegistryError.
    """

    def __init__(self, home: str | os.PathLike | None = None, lock_timeout: float = 60.0) -> None:
        self.home = Path(home).expanduser() if home is not None else registry_home()
        self.lock_timeout = lock_timeout
        self.index_path = self.home / INDEX_FILE
        self.models_dir = self.home / "models"
        self.staging_dir = self.home / "staging"

    # ------------------------------------------------------------------------------ look-ups

    def resolve(self, spec: str | os.PathLike) -> Path:
        """The model folder `spec` names: a folder path, `name` (its active version) or
        `name@version`."""
        return self._locate(spec, self._read_index())[0]

    def lookup(self, spec: str | os.PathLike) -> VersionRef | None:
        """The registered version `spec` names (also for a path into the registry); None for a
        model folder outside the registry."""
        return self._locate(spec, self._read_index())[1]

    def active(self, name: str) -> VersionRef:
        """The active version of model `name`."""
        index = self._read_index()
        return VersionRef(name, _active_version(index, name, self._model(index, name)))

    def list(self) -> list[dict[str, Any]]:
        """Every version: models by name, each newest first, the active one marked."""
        index = self._read_index()
        return [self._describe(index, name, v)
                for name in sorted(index["models"])
                for v in reversed(index["models"][name]["versions"])]

    def show(self, spec: str | os.PathLike) -> dict[str, Any]:
        """`modelfile.model_info` of the model `spec` names, plus its registry fields."""
        index = self._read_index()
        folder, ref = self._locate(spec, index)
        info = _modelfile().model_info(folder)
        if ref is None:
            return {**info, "registered": False}
        described = self._describe(index, ref.name, self._version(index, ref))
        if info["weights_sha256"] != described.pop("weights_sha256"):
            raise ModelFileError(f"{folder} was modified after it was registered as {ref}: its "
                                 "weights differ from the registered ones. Remove this version "
                                 "and import the model again.")
        children = [str(VersionRef(n, v["version"])) for n, m in index["models"].items()
                    for v in m["versions"] if v.get("parent") == str(ref)]
        return {**described, **info, "registered": True, "children": children}  # full classes

    # ------------------------------------------------------------------------------ adding

    def import_model(self, src: str | os.PathLike, name: str | None = None) -> VersionRef:
        """Add a model folder or an exported .zip as a new, active "base" version of `name`
        (default: the folder or archive name); the model is fully validated first."""
        src = Path(src).expanduser()
        is_zip = src.is_file() and full_suffix(src) == ".zip"
        if not is_zip:
            _modelfile().model_info(src)  # errors name the user's folder; the copy is checked again
        hint = ""
        if name is None:
            folder = src.parent if src.is_file() and not is_zip else src
            name = folder.name[: -len(".zip")] if is_zip else folder.name
            hint = " Give the model a name with --name."
        check_name(name, hint)
        with self._staging_area() as area:
            staged = area / "model"
            # errors name the user's files, never the staging copy
            shown = f"{src} member " if is_zip else f"{src.parent if src.is_file() else src}/"
            try:
                if is_zip:
                    shown += _extract_model_zip(src, staged)
                else:
                    _copy_model_files(src, staged)
                return self._commit(staged, name, kind="base", parent=None, activate=True,
                                    source=str(src.resolve()))
            except ModelFileError as err:
                message = str(err).replace(f"{staged}{os.sep}", shown)
                raise ModelFileError(f"Cannot import {src}: {message}") from err

    @contextlib.contextmanager
    def stage_version(self, name: str, parent: VersionRef | None = None
                      ) -> Iterator[StagedVersion]:
        """Context manager for a new "adapted" version of `name` derived from `parent`.

        Save a model into the yielded `.path` (`modelfile.save_model`); a normal exit validates
        and commits it as the next version (activated unless `.activate` was set False). Any
        exception (Cancelled, KeyboardInterrupt, ...) deletes the staged files and changes
        nothing.
        """
        check_name(name)
        if parent is not None:
            self._version(self._read_index(), parent)  # fail before any work if it is unknown
        with self._staging_area() as area:
            staged = StagedVersion(area / "model")
            yield staged
            staged.ref = self._commit(staged.path, name, kind="adapted", parent=parent,
                                      activate=staged.activate)

    def check_writable(self) -> None:
        """OutputError unless the registry folder can be created and written: call it before
        long work that ends by adding a version (Adapt), not after."""
        with self._locked():
            try:
                fd, probe = tempfile.mkstemp(dir=self.home, prefix=".write-check-")
                os.close(fd)
                os.unlink(probe)
            except OSError as err:
                raise _not_writable(self.home, err) from err

    def check_classes_of(self, name: str, class_names: list[str]) -> None:
        """ModelFileError if model `name` exists with other classes than `class_names`: a new
        version of it must have the same ones. Call it before the work that makes the version
        (committing checks again)."""
        model = self._read_index()["models"].get(name)
        if model is not None:
            _check_version_classes(model, class_names, name)

    # ------------------------------------------------------------------------------ changing

    def activate(self, name: str, version: str) -> VersionRef:
        """Make `name@version` the active version (the previous one can be rolled back to)."""
        with self._locked() as index:
            self._version(index, VersionRef(name, version))
            model = index["models"][name]
            if model["active"] != version:
                if model["active"] is not None:
                    model["history"].append(model["active"])
                model["active"] = version
                self._write_index(index)
        return VersionRef(name, version)

    def rollback(self, name: str) -> VersionRef:
        """Re-activate the version that was active before the current one."""
        with self._locked() as index:
            model = self._model(index, name)
            if not model["history"]:
                raise RegistryError(f"Model {name} has no earlier active version to roll back to "
                                    f"({name}@{model['active']} has been active since it was "
                                    f"added). Activate one explicitly: arcoseg models activate "
                                    f"{name}@VERSION.")
            model["active"] = model["history"].pop()
            self._write_index(index)
            return VersionRef(name, model["active"])

    def remove(self, spec: str, force: bool = False) -> list[VersionRef]:
        """Delete `name@version`, or every version of `name`.

        Refused without `force` when that removes the active version or a version another
        version names as its parent. A forced removal of the active version re-activates the
        previously active one (else the newest left).
        """
        with self._locked() as index:
            name, _, version = spec.partition("@")
            model = self._model(index, check_name(name))
            ids = [version] if version else [v["version"] for v in model["versions"]]
            if version:
                self._version(index, VersionRef(name, version))
            if not force:
                _check_removable(index, name, ids, whole=not version)
            model["versions"] = [v for v in model["versions"] if v["version"] not in ids]
            if model["versions"]:
                _forget_versions(model, ids)
            else:
                del index["models"][name]
            self._write_index(index)
            doomed = ([self.models_dir / name] if name not in index["models"]
                      else [self._version_dir(name, v) for v in ids])
            for folder in doomed:
                self._discard(folder)
        return [VersionRef(name, v) for v in ids]

    def export(self, spec: str | os.PathLike, dest: str | os.PathLike,
               with_history: bool = False) -> Path:
        """Copy the model `spec` names to folder `dest` (into it, as `<name>-<version>`, when it
        is an existing folder), or write it as a .zip archive when `dest` ends in .zip.

        Exported: model.safetensors and model.json (which holds the provenance); with
        `with_history` also the training history (training/: metrics, options, curves), never
        the training checkpoint (resume state, about twice the weights' size).
        """
        folder, ref = self._locate(spec, self._read_index())
        _modelfile().model_info(folder)  # export only a complete, valid model
        files = _export_files(folder, with_history)
        label = f"{ref.name}-{ref.version}" if ref else folder.name
        dest = Path(dest).expanduser()
        if full_suffix(dest) == ".zip":
            _write_model_zip(folder, files, dest, label)
            return dest
        if dest.is_dir():
            dest = dest / label
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
        return dest

    # ------------------------------------------------------------------------------ internals

    def _commit(self, staged: Path, name: str, kind: str, parent: VersionRef | None,
                activate: bool, source: str | None = None) -> VersionRef:
        """Validate the staged model folder and move it in as the next version of `name`."""
        if not staged.is_dir():
            raise ModelFileError(f"No model was saved into the staging folder {staged}; save "
                                 "one with arcoseg.modelfile.save_model before the block ends.")
        info = _modelfile().model_info(staged)
        with self._locked() as index:
            model = index["models"].get(name)
            if model is not None:
                _check_version_classes(model, _modelfile().load_metadata(staged).class_names,
                                       name)
            else:
                model = {"active": None, "history": [], "next": 1, "versions": []}
            number = max(model["next"], self._next_free_number(name))
            version = f"v{number}"
            dest = self._version_dir(name, version)
            model["versions"].append(_version_entry(version, kind, parent, info, source))
            model["next"] = number + 1
            if activate:
                if model["active"] is not None:
                    model["history"].append(model["active"])
                model["active"] = version
            index["models"][name] = model
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, dest)
            try:
                self._write_index(index)
            except BaseException:
                self._discard(dest)
                raise
        return VersionRef(name, version)

    def _next_free_number(self, name: str) -> int:
        """1 + the highest version number present on disk (unlisted leftovers included)."""
        versions = self.models_dir / name / "versions"
        found = [int(m.group(1)) for p in (versions.iterdir() if versions.is_dir() else [])
                 if (m := _VERSION.fullmatch(p.name))]
        return max(found, default=0) + 1

    @contextlib.contextmanager
    def _staging_area(self) -> Iterator[Path]:
        """A private folder in staging/, locked by this process until it is deleted on exit."""
        with self._locked():
            self._clean_staging()
            area = self.staging_dir / uuid.uuid4().hex
            area.mkdir(parents=True)
            lock = FileLock(area / _STAGING_LOCK)
            lock.acquire()
        try:
            yield area
        finally:
            lock.release()
            shutil.rmtree(area, ignore_errors=True)

    def _clean_staging(self) -> None:
        """Delete staging folders whose process has ended (their lock is free). Lock held."""
        for area in self.staging_dir.iterdir() if self.staging_dir.is_dir() else []:
            if not area.is_dir():
                continue
            lock = FileLock(area / _STAGING_LOCK)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # a live process is writing there
            lock.release()
            shutil.rmtree(area, ignore_errors=True)

    def _discard(self, folder: Path) -> None:
        """Move `folder` into staging/ (so a partial delete stays out of sight), then delete it."""
        if not folder.exists():
            return
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        trash = self.staging_dir / uuid.uuid4().hex
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Hold the registry lock; yields the current index (write it with `_write_index`)."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"Cannot create the model registry folder {self.home}: "
                              f"{err.strerror or err}. Set ARCOSEG_HOME to a writable folder."
                              ) from err
        lock = FileLock(self.home / LOCK_FILE)
        try:
            lock.acquire(timeout=self.lock_timeout)
        except Timeout as err:
            raise RegistryError(f"Another ARCOSegment process is using the registry {self.home} "
                                f"(waited {self.lock_timeout:g} s for {lock.lock_file}). Let it "
                                "finish, then try again.") from err
        except OSError as err:
            raise _not_writable(self.home, err) from err
        try:
            yield self._read_index()
        finally:
            lock.release()

    def _read_index(self) -> dict[str, Any]:
        path = self.index_path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"format_version": INDEX_VERSION, "models": {}}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RegistryError(f"The registry index {path} cannot be read ({err}). Restore it "
                                "from a backup, or move the folder "
                                f"{self.home} away to start an empty registry (its models can be "
                                "imported again with `arcoseg models import`).") from err
        version = data.get("format_version") if isinstance(data, dict) else None
        if not isinstance(version, int) or not isinstance(data.get("models"), dict):
            raise RegistryError(f"The registry index {path} is damaged (no format_version / "
                                "models). Restore it from a backup, or move the folder "
                                f"{self.home} away to start an empty registry.")
        if version > INDEX_VERSION:
            raise RegistryError(f"The registry {self.home} was written by a newer ARCOSegment "
                                f"(index format {version}). Upgrade ARCOSegment to use it.")
        return data

    def _write_index(self, index: dict[str, Any]) -> None:
        write_text_atomic(self.index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")

    def _version_dir(self, name: str, version: str) -> Path:
        return self.models_dir / name / "versions" / version

    def _model(self, index: dict[str, Any], name: str) -> dict[str, Any]:
        if name not in index["models"]:
            known = ", ".join(sorted(index["models"])) or "none"
            raise RegistryError(f"No model named {name!r} in the registry {self.home} (models: "
                                f"{known}). Run `arcoseg models list` or import it first.")
        return index["models"][name]

    def _version(self, index: dict[str, Any], ref: VersionRef) -> dict[str, Any]:
        versions = self._model(index, ref.name)["versions"]
        for entry in versions:
            if entry["version"] == ref.version:
                return entry
        known = ", ".join(v["version"] for v in versions)
        raise RegistryError(f"Model {ref.name} has no version {ref.version!r} (versions: "
                            f"{known}). Run `arcoseg models list` to see them.")

    def _locate(self, spec: str | os.PathLike,
                index: dict[str, Any]) -> tuple[Path, VersionRef | None]:
        """Folder and registry version (None outside the registry) that `spec` names."""
        text = os.fspath(spec)
        name, _, version = text.partition("@")
        if not isinstance(spec, os.PathLike) and not _looks_like_path(text) \
                and name in index["models"]:
            ref = VersionRef(name, version or _active_version(index, name, index["models"][name]))
            self._version(index, ref)
            return self._version_dir(ref.name, ref.version), ref
        path = Path(text).expanduser()
        if not path.exists():
            known = ", ".join(sorted(index["models"])) or "none"
            raise RegistryError(f"No model {text!r}: it is neither a model in the registry "
                                f"{self.home} (models: {known}) nor an existing folder. Run "
                                "`arcoseg models list`, or give a model folder path.")
        return path, self._ref_of_path(path, index)

    def _ref_of_path(self, path: Path, index: dict[str, Any]) -> VersionRef | None:
        """The registered version whose folder `path` is, if any."""
        try:
            parts = path.resolve().relative_to(self.models_dir.resolve()).parts
        except ValueError:
            return None
        if len(parts) != 3 or parts[1] != "versions" or parts[0] not in index["models"]:
            return None
        listed = {v["version"] for v in index["models"][parts[0]]["versions"]}
        return VersionRef(parts[0], parts[2]) if parts[2] in listed else None

    def _describe(self, index: dict[str, Any], name: str, entry: dict[str, Any]
                  ) -> dict[str, Any]:
        """The registry fields of one version (for `list` and `show`)."""
        return {"name": name, "version": entry["version"],
                "ref": str(VersionRef(name, entry["version"])), "kind": entry["kind"],
                "parent": entry["parent"], "created": entry["created"],
                "active": index["models"][name]["active"] == entry["version"],
                "classes": entry["classes"], **entry["summary"],
                **({"source": entry["source"]} if "source" in entry else {}),
                "weights_sha256": entry["weights_sha256"],
                "path": str(self._version_dir(name, entry["version"]))}


def _not_writable(home: Path, err: OSError) -> OutputError:
    return OutputError(f"Cannot write in the model registry folder {home}: "
                       f"{err.strerror or err}. Fix its permissions, or set ARCOSEG_HOME to a "
                       "writable folder.")


def _check_version_classes(model: dict[str, Any], class_names: list[str], name: str) -> None:
    """ModelFileError unless `class_names` are those of the newest version of `model`."""
    expected = model["versions"][-1]["classes"]
    if class_names != expected:
        raise ModelFileError(f"Adding a version to model {name!r}: its classes {expected} differ "
                             f"from the new model's {class_names}. Give another name (--name), "
                             "or start from a model with these classes (same names, order).")


def _version_entry(version: str, kind: str, parent: VersionRef | None, info: dict[str, Any],
                   source: str | None) -> dict[str, Any]:
    """The index entry of a new version, `info` being its `model_info`."""
    entry = {"version": version, "kind": kind, "parent": str(parent) if parent else None,
             "created": _now(), "classes": [c["name"] for c in info["classes"]],
             "weights_sha256": info["weights_sha256"],
             "summary": {k: info["provenance"][k] for k in _SUMMARY_KEYS
                         if info["provenance"].get(k) is not None}}
    if source:
        entry["source"] = source
    return entry


def _check_removable(index: dict[str, Any], name: str, ids: list[str], whole: bool) -> None:
    """RegistryError when removing `ids` of `name` takes the active version or orphans a child."""
    active = index["models"][name]["active"]
    if active in ids:
        what = (f"removes its active version {name}@{active}" if whole
                else f"is the active version of {name}")
        raise RegistryError(f"{name if whole else f'{name}@{active}'} {what}. Activate another "
                            "version first (arcoseg models activate NAME@VERSION), or use --force.")
    doomed = {str(VersionRef(name, v)) for v in ids}
    children = [f"{n}@{v['version']} (child of {v['parent']})"
                for n, m in index["models"].items() for v in m["versions"]
                if v.get("parent") in doomed and str(VersionRef(n, v["version"])) not in doomed]
    if children:
        raise RegistryError(f"Other versions were adapted from it: {', '.join(children)}. "
                            "Remove them first, or use --force (they keep the parent's name).")


def _forget_versions(model: dict[str, Any], ids: list[str]) -> None:
    """Drop removed versions from the activation history; re-activate if the active one went."""
    kept = [h for h in model["history"] if h not in ids]
    model["history"] = [h for i, h in enumerate(kept) if i == 0 or h != kept[i - 1]]
    if model["active"] in ids:
        model["active"] = (model["history"].pop() if model["history"]
                           else model["versions"][-1]["version"])
    while model["history"] and model["history"][-1] == model["active"]:
        model["history"].pop()  # rolling back to the active version would change nothing


def _copy_model_files(src: Path, dest: Path) -> None:
    """Copy the two model files of model folder `src` (or of its model.json) into new `dest`."""
    folder = src.parent if src.is_file() else src
    dest.mkdir()
    for name in MODEL_FILES:
        shutil.copyfile(folder / name, dest / name)


def _extract_model_zip(archive: Path, dest: Path) -> str:
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
            dest.mkdir()
            for name, info in members.items():
                (dest / name).write_bytes(zf.read(info))
            return members[MODEL_FILES[0]].filename[: -len(MODEL_FILES[0])]
    except zipfile.BadZipFile as err:
        raise ModelFileError(f"{archive} is not a valid zip archive ({err}). Export the model "
                             "again.") from err


def _export_files(folder: Path, with_history: bool) -> list[PurePosixPath]:
    """The files of model folder `folder` an export holds (relative paths): the model files,
    and with `with_history` the training history but not its checkpoint (resume state)."""
    files = [PurePosixPath(name) for name in sorted(MODEL_FILES)]
    history = folder / _HISTORY
    if with_history and history.is_dir():
        files += sorted(PurePosixPath(p.relative_to(folder).as_posix()) for p in history.rglob("*")
                        if p.is_file() and not p.name.startswith(_CHECKPOINT_PREFIX))
    return files


def _write_model_zip(folder: Path, files: list[PurePosixPath], dest: Path, label: str) -> None:
    """Write `files` of model folder `folder` into archive `dest` (atomically) under `label/`."""
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for path in files:
            # weights hardly compress, so they are stored as is (faster); the rest is text/PNG
            method = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
            zf.write(folder / path, f"{label}/{path}", compress_type=method)


def _modelfile():
    """arcoseg.modelfile, imported on first use: it needs torch, which `models list` does not."""
    import arcoseg.modelfile

    return arcoseg.modelfile


def _active_version(index: dict[str, Any], name: str, model: dict[str, Any]) -> str:
    """The active version of `model`; a clear error when none is (every version was saved
    without activation, e.g. an adaptation that failed its held-out check)."""
    if model["active"] is None:
        versions = ", ".join(f"{name}@{v['version']}" for v in model["versions"])
        raise RegistryError(f"Model {name} has no active version: {versions} were saved but not "
                            "activated (see their held-out check with `arcoseg models show`). "
                            f"Activate one explicitly (arcoseg models activate {name}@VERSION) "
                            "or name a version.")
    return model["active"]
