"""The registry's files: the index, its lock, the staging area and the version folders.

`RegistryStore` is the base of `Registry` (`registry.versions`): everything that reads or writes
the home folder's layout (see `arcoseg.registry`) lives here, so the operations on versions read
as what they do. Reads need no lock (the index is replaced atomically); every write holds the
registry lock for at most `lock_timeout` seconds of waiting, then fails with RegistryError.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from arcoseg.errors import OutputError
from arcoseg.fileutil import expand_user, write_text_atomic
from arcoseg.registry.entries import index_problem
from arcoseg.registry.names import (VERSION_ID, RegistryError, VersionRef, looks_like_path,
                                    parse_ref, registry_home)

INDEX_VERSION = 1
INDEX_FILE = "registry.json"
LOCK_FILE = "registry.lock"
_STAGING_LOCK = ".lock"


class RegistryStore:
    """The home folder of a registry (default `registry_home()`) and its index."""

    def __init__(self, home: str | os.PathLike | None = None, lock_timeout: float = 60.0) -> None:
        self.home = expand_user(home) if home is not None else registry_home()
        self.lock_timeout = lock_timeout
        self.index_path = self.home / INDEX_FILE
        self.models_dir = self.home / "models"
        self.staging_dir = self.home / "staging"

    def _next_free_number(self, name: str) -> int:
        """1 + the highest version number present on disk (unlisted leftovers included)."""
        versions = self.models_dir / name / "versions"
        found = [int(m.group(1)) for p in (versions.iterdir() if versions.is_dir() else [])
                 if (m := VERSION_ID.fullmatch(p.name))]
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
        self._check_home()
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
            raise not_writable(self.home, err) from err
        try:
            yield self._read_index()
        finally:
            lock.release()

    def _check_home(self) -> None:
        if self.home.exists() and not self.home.is_dir():
            raise RegistryError(f"The registry home {self.home} is a file, not a folder. Set "
                                "ARCOSEG_HOME to a folder (default: ~/.arcoseg).")

    def _read_index(self) -> dict[str, Any]:
        path = self.index_path
        self._check_home()
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (Notepad) too
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
        problem = index_problem(data["models"])
        if problem:
            raise RegistryError(f"The registry index {path} is damaged: {problem}. Restore it "
                                "from a backup, or move the folder "
                                f"{self.home} away to start an empty registry.")
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
        """Folder and registry version (None outside the registry) that `spec` names: a
        registered `NAME` or `NAME@VERSION` (RegistryError when malformed, e.g. `NAME@`), else
        an existing folder."""
        text = os.fspath(spec)
        as_name = not isinstance(spec, os.PathLike) and not looks_like_path(text)
        if as_name and text.partition("@")[0] in index["models"]:
            ref = self._registered_ref(text, index)
            return self._version_dir(ref.name, ref.version), ref
        path = expand_user(text)
        if not path.exists():
            if as_name:
                parse_ref(text)  # a malformed reference gets its own message
            known = ", ".join(sorted(index["models"])) or "none"
            raise RegistryError(f"No model {text!r}: it is neither a model in the registry "
                                f"{self.home} (models: {known}) nor an existing folder. Run "
                                "`arcoseg models list`, or give a model folder path.")
        return path, self._ref_of_path(path, index)

    def _registered_ref(self, text: str, index: dict[str, Any]) -> VersionRef:
        """The listed version `NAME@VERSION` or `NAME` (its active version) names."""
        name, version = parse_ref(text)
        ref = VersionRef(name, version or active_version(index, name, index["models"][name]))
        self._version(index, ref)
        return ref

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


def not_writable(home: Path, err: OSError) -> OutputError:
    """The error for a registry folder that cannot be written."""
    return OutputError(f"Cannot write in the model registry folder {home}: "
                       f"{err.strerror or err}. Fix its permissions, or set ARCOSEG_HOME to a "
                       "writable folder.")


def active_version(index: dict[str, Any], name: str, model: dict[str, Any]) -> str:
    """The active version of `model`; a clear error when none is (every version was saved
    without activation, e.g. an adaptation that failed its held-out check)."""
    if model["active"] is None:
        raise _no_active_version(name, [str(VersionRef(name, v["version"]))
                                        for v in model["versions"]])
    return model["active"]


def _no_active_version(name: str, refs: list[str]) -> RegistryError:
    """The error for model `name` whose versions `refs` (oldest first) were none activated."""
    newest = refs[-1]
    if len(refs) == 1:
        saved, which, pick = f"{newest} was saved but not activated", "its", "it with"
    else:
        saved, which, pick = (f"{', '.join(refs)} were saved but none was activated",
                              "each one's", "one, e.g. with")
    return RegistryError(f"Model {name} has no active version: {saved} (see {which} held-out "
                         f"check with `arcoseg models show {newest}`). Activate {pick} "
                         f"`arcoseg models activate {newest}`, or name a version ({newest}).")
