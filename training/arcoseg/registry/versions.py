"""`Registry`: look up, add, activate, roll back, remove and export model versions."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from arcoseg.constants import METADATA_FILE
from arcoseg.errors import ModelFileError
from arcoseg.fileutil import expand_user, full_suffix
from arcoseg.registry.archive import (copy_model_files, export_files, extract_model_zip,
                                      write_model_folder, write_model_zip)
from arcoseg.registry.entries import (check_can_add, check_new_name, check_removable,
                                      forget_versions, make_active, removed_next,
                                      version_entry)
from arcoseg.registry.names import (VERSION_ID, RegistryError, StagedVersion, VersionRef,
                                    parse_ref)
from arcoseg.registry.store import RegistryStore, active_version, not_writable


class Registry(RegistryStore):
    """The model registry in `home` (default `registry_home()`; layout: `arcoseg.registry`)."""

    # ------------------------------------------------------------------------------ look-ups

    def resolve(self, spec: str | os.PathLike) -> Path:
        """The model folder `spec` names: a folder path, `name` (its active version) or
        `name@version`. ModelFileError for a registered version whose files were replaced
        (`_locate_unchanged`)."""
        return self._locate_unchanged(spec, self._read_index())[0]

    def lookup(self, spec: str | os.PathLike) -> VersionRef | None:
        """The registered version `spec` names (also for a path into the registry); None for a
        model folder outside the registry."""
        return self._locate(spec, self._read_index())[1]

    def active(self, name: str) -> VersionRef:
        """The active version of model `name`."""
        index = self._read_index()
        return VersionRef(name, active_version(index, name, self._model(index, name)))

    def list(self) -> list[dict[str, Any]]:
        """Every version: models by name, each newest first, the active one marked."""
        index = self._read_index()
        return [self._describe(index, name, v)
                for name in sorted(index["models"])
                for v in reversed(index["models"][name]["versions"])]

    def _locate_unchanged(self, spec: str | os.PathLike,
                          index: dict[str, Any]) -> tuple[Path, VersionRef | None]:
        """`_locate`, and ModelFileError if the registered version's model.json names other
        weights than were registered (its files replaced by another model's: loading it then
        verifies the weights against model.json, so the registered model is what runs)."""
        folder, ref = self._locate(spec, index)
        if ref is not None:
            self._check_unchanged(index, ref)
        return folder, ref

    def _check_unchanged(self, index: dict[str, Any], ref: VersionRef) -> None:
        """ModelFileError if `ref`'s model.json names other weights than were registered (or
        cannot be read). Read without the engine: `models activate` imports no torch."""
        folder = self._version_dir(ref.name, ref.version)
        registered = self._version(index, ref)["weights_sha256"]
        if _recorded_digest(folder) != registered:
            raise ModelFileError(f"{folder} was modified after it was registered as {ref}: "
                                 "its model.json is missing or names other weights than the "
                                 "registered ones. Remove this version and import the model "
                                 "again.")

    def show(self, spec: str | os.PathLike) -> dict[str, Any]:
        """`modelfile.model_info` of the model `spec` names, plus its registry fields."""
        index = self._read_index()
        folder, ref = self._locate_unchanged(spec, index)
        info = _modelfile().model_info(folder)
        if ref is None:
            return {**info, "registered": False}
        described = self._describe(index, ref.name, self._version(index, ref))
        del described["weights_sha256"]  # checked: the same as info's
        children = [str(VersionRef(n, v["version"])) for n, m in index["models"].items()
                    for v in m["versions"] if v.get("parent") == str(ref)]
        return {**described, **info, "registered": True, "children": children}  # full classes

    # ------------------------------------------------------------------------------ adding

    def import_model(self, src: str | os.PathLike, name: str | None = None) -> VersionRef:
        """Add a model folder or an exported .zip as a new, active "base" version of `name`
        (default: the folder or archive name); the model is fully validated first."""
        src = expand_user(src)
        is_zip = src.is_file() and full_suffix(src) == ".zip"
        if not is_zip:
            _modelfile().model_info(src)  # errors name the user's folder; the copy is checked again
        hint = ""
        if name is None:
            folder = src.parent if src.is_file() and not is_zip else src
            name = folder.name[: -len(".zip")] if is_zip else folder.name
            if VERSION_ID.fullmatch(name) and folder.parent.name == "versions":
                name = folder.parent.parent.name  # a registry's NAME/versions/vN folder
            hint = " Give the model a name with --name."
            if name in self._read_index()["models"]:  # a new version of it only when asked
                raise RegistryError(f"A model named {name!r} is already registered; to add "
                                    f"{src} as its new version, give --name {name}; else "
                                    "choose another --name.")
        self.check_new_name(name, hint)
        with self._staging_area() as area:
            staged = area / "model"
            # errors name the user's files, never the staging copy
            shown = f"{src} member " if is_zip else f"{src.parent if src.is_file() else src}/"
            try:
                if is_zip:
                    shown += extract_model_zip(src, staged)
                else:
                    copy_model_files(src, staged)
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
        self.check_new_name(name)
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
                raise not_writable(self.home, err) from err

    def check_new_name(self, name: str, hint: str = "") -> None:
        """RegistryError unless `name` is a registered model or may become one
        (`entries.check_new_name`)."""
        check_new_name(self._read_index(), name, hint)

    def check_can_add(self, name: str, class_names: list[str]) -> None:
        """The errors `entries.check_can_add` gives for a new version of `name` with classes
        `class_names` (a name that differs from another only in case; other classes than the
        model's). Call it before the work that makes the version (committing checks again)."""
        check_can_add(self._read_index(), name, class_names)

    # ------------------------------------------------------------------------------ changing

    def activate(self, name: str, version: str) -> VersionRef:
        """Make `name@version` the active version (the previous one can be rolled back to)."""
        with self._locked() as index:
            self._check_unchanged(index, VersionRef(name, version))  # never activate a swap
            model = index["models"][name]
            if model["active"] != version:
                make_active(model, version)
                self._write_index(index)
        return VersionRef(name, version)

    def rollback(self, name: str) -> VersionRef:
        """Re-activate the version that was active before the current one."""
        with self._locked() as index:
            model = self._model(index, name)
            if not model["history"]:
                raise _nothing_to_roll_back(name, model)
            self._check_unchanged(index, VersionRef(name, model["history"][-1]))
            model["active"] = model["history"].pop()
            self._write_index(index)
            return VersionRef(name, model["active"])

    def remove(self, spec: str, force: bool = False) -> list[VersionRef]:
        """Delete `name@version`, or every version of `name`.

        Refused without `force` when that removes the active version or a version another
        version names as its parent. A forced removal of the active version re-activates the
        previously active one, else the newest one that was ever active (never one Adapt saved
        without activating it). A removed model's version
        numbers are not given again to a new model of its name (a child's parent, a script's
        NAME@vN would name another model).
        """
        with self._locked() as index:
            name, version = parse_ref(spec)  # 'NAME@' is an error, never the whole model
            model = self._model(index, name)  # a registered name, whatever its rules were
            ids = [version] if version else [v["version"] for v in model["versions"]]
            if version:
                self._version(index, VersionRef(name, version))
            if not force:
                check_removable(index, name, ids, whole=not version)
            model["versions"] = [v for v in model["versions"] if v["version"] not in ids]
            if model["versions"]:
                forget_versions(model, ids)
            else:
                del index["models"][name]
                index.setdefault("removed", {})[name] = model["next"]
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
        folder, ref = self._locate_unchanged(spec, self._read_index())
        _modelfile().model_info(folder)  # export only a complete, valid model
        files = export_files(folder, with_history)
        label = f"{ref.name}-{ref.version}" if ref else folder.name
        dest = expand_user(dest)
        if full_suffix(dest) == ".zip":
            write_model_zip(folder, files, dest, label)
            return dest
        target = dest / label if dest.is_dir() else dest
        write_model_folder(folder, files, target)
        return target

    def _commit(self, staged: Path, name: str, kind: str, parent: VersionRef | None,
                activate: bool, source: str | None = None) -> VersionRef:
        """Validate the staged model folder and move it in as the next version of `name`."""
        if not staged.is_dir():
            raise ModelFileError(f"No model was saved into the staging folder {staged}; save "
                                 "one with arcoseg.modelfile.save_model before the block ends.")
        info = _modelfile().model_info(staged)
        _modelfile().check_has_plan(info["plan"], "model.json")  # else imported, unusable
        with self._locked() as index:
            try:
                if parent is not None:
                    self._version(index, parent)
            except RegistryError as err:
                raise RegistryError(f"The parent {parent} was removed from the registry while "
                                    "this version was made from it, so the new version was not "
                                    "saved (nor its outputs). Adapt again from another model."
                                    ) from err
            check_can_add(index, name, [c["name"] for c in info["classes"]])
            model = index["models"].get(name) or {"active": None, "history": [], "next": 1,
                                                  "versions": []}
            number = max(model["next"], self._next_free_number(name), removed_next(index, name))
            version = f"v{number}"
            dest = self._version_dir(name, version)
            model["versions"].append(version_entry(version, kind, parent, info, source))
            model["next"] = number + 1
            if activate:
                make_active(model, version)
            index["models"][name] = model
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, dest)
            try:
                self._write_index(index)
            except BaseException:
                self._discard(dest)
                raise
        return VersionRef(name, version)


def _nothing_to_roll_back(name: str, model: dict[str, Any]) -> RegistryError:
    """The error for rolling back model `name` (its index entry) whose activation history is
    empty: nothing was active before the active version, or that was rolled back or removed."""
    others = [v["version"] for v in model["versions"] if v["version"] != model["active"]]
    if not others:
        return RegistryError(f"Model {name} has no earlier active version to roll back to: "
                             f"{name}@{model['active']} is its only version.")
    now = (f"{name}@{model['active']} is active now" if model["active"] is not None
           else "no version is active now")
    return RegistryError(f"Model {name} has no earlier active version to roll back to ({now}). "
                         f"Activate one explicitly: arcoseg models activate "
                         f"{name}@VERSION (versions: {', '.join(others)}).")


def _recorded_digest(folder: Path) -> str | None:
    """The weights checksum model.json records (lower case, as `ModelMetadata` reads it), or
    None if it cannot be read; the full validation is `modelfile`'s, when the model is used."""
    try:
        data = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    digest = data.get("weights_sha256") if isinstance(data, dict) else None
    return digest.lower() if isinstance(digest, str) else None


def _modelfile():
    """arcoseg.modelfile, imported on first use: it needs torch, which `models list` does not."""
    import arcoseg.modelfile

    return arcoseg.modelfile
