"""The registry index's entries: a new version's entry, and the rules for adding a version to
a model (its name, its classes), removing versions and keeping the activation history."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from arcoseg.errors import ModelFileError
from arcoseg.registry.names import (VERSION_ID, RegistryError, VersionRef, check_name,
                                    windows_form)

# Provenance fields of model.json copied into the index for `list` (the rest stays in model.json).
_SUMMARY_KEYS = ("method", "dataset", "held_out", "validation")


def version_entry(version: str, kind: str, parent: VersionRef | None, info: dict[str, Any],
                  source: str | None) -> dict[str, Any]:
    """The index entry of a new version, `info` being its `model_info`."""
    entry = {"version": version, "kind": kind, "parent": str(parent) if parent else None,
             "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "classes": [c["name"] for c in info["classes"]],
             "weights_sha256": info["weights_sha256"],
             "summary": {k: info["provenance"][k] for k in _SUMMARY_KEYS
                         if info["provenance"].get(k) is not None}}
    if source:
        entry["source"] = source
    return entry


_ENTRY_KEYS = {"version": str, "kind": str, "classes": list, "weights_sha256": str,
               "created": str, "summary": dict}


def index_problem(models: dict[str, Any]) -> str | None:
    """What is wrong with the index's models (a hand-edited registry.json), or None: each
    model's versions with their required fields, its active version and history among them."""
    for name, model in models.items():
        # names become folder names: nothing like ../.. may pass (check_name's rules are
        # newer than some registered names, which stay usable)
        if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
            return f"model name {name!r} is not a folder name"
        if not isinstance(model, dict) or not isinstance(model.get("versions"), list):
            return f"model {name!r} has no list of versions"
        versions = []
        for entry in model["versions"]:
            if not isinstance(entry, dict) or not all(isinstance(entry.get(key), kind)
                                                      for key, kind in _ENTRY_KEYS.items()):
                return (f"a version of model {name!r} lacks one of "
                        f"{', '.join(_ENTRY_KEYS)}: {str(entry)[:120]}")
            if not VERSION_ID.fullmatch(entry["version"]) or entry["version"] in versions:
                return f"model {name!r} lists version {entry['version']!r} (not vN, or twice)"
            versions.append(entry["version"])
        history = model.get("history")
        if not isinstance(history, list) or not isinstance(model.get("next"), int):
            return f"model {name!r} has no activation history or next version number"
        for version in [model.get("active"), *history]:
            if version is not None and version not in versions:
                return (f"model {name!r} names version {version!r} (active or in its history), "
                        f"which it does not list ({', '.join(versions) or 'none'})")
    return None


def check_new_name(index: dict[str, Any], name: str, hint: str = "") -> None:
    """RegistryError unless `name` is a model the index holds (kept under the rules it was added
    with) or a valid new name: `check_name`, and not the same folder on Windows or macOS as an
    existing model's (`windows_form`: differing only in case or in trailing dots/spaces)."""
    if name in index["models"]:
        return
    check_name(name, hint)
    twins = [n for n in index["models"] if windows_form(n) == windows_form(name)]
    if not twins:
        return
    if twins[0].casefold() == name.casefold():
        raise RegistryError(f"Model name {name!r} differs from the existing model {twins[0]!r} "
                            "only in upper/lower case; on Windows and macOS both would be one "
                            f"folder. Use {twins[0]!r} (--name) or a different name.")
    raise RegistryError(f"Model name {name!r} differs from the existing model {twins[0]!r} only "
                        "in trailing dots or spaces (or case); Windows drops those, so both "
                        f"would be one folder there. Use {twins[0]!r} (--name) or a different "
                        "name.")


def check_can_add(index: dict[str, Any], name: str, class_names: list[str]) -> None:
    """`check_new_name`'s errors, and ModelFileError when model `name` exists and its newest
    version's classes are not `class_names` (same names, same order)."""
    check_new_name(index, name)
    model = index["models"].get(name)
    if model is None:
        return
    expected = model["versions"][-1]["classes"]
    if class_names != expected:
        raise ModelFileError(f"Adding a version to model {name!r}: its classes {expected} differ "
                             f"from the new model's {class_names}. Give another name (--name), "
                             "or start from a model with these classes (same names, order).")


def check_removable(index: dict[str, Any], name: str, ids: list[str], whole: bool) -> None:
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


def make_active(model: dict[str, Any], version: str) -> None:
    """Activate `version` of `model` (the active one goes onto the rollback history), and
    record on its entry that it was active once (`forget_versions`' fallback)."""
    if model["active"] is not None:
        model["history"].append(model["active"])
    model["active"] = version
    for entry in model["versions"]:
        if entry["version"] == version:
            entry["activated"] = True


def forget_versions(model: dict[str, Any], ids: list[str]) -> None:
    """Drop removed versions from the activation history; if the active one went, re-activate
    the one active before it, else the newest that was ever active (an imported base of an
    index older than that record), else none: never a version Adapt saved without activating
    it (its held-out check failed), which a removal must not put to use."""
    kept = [h for h in model["history"] if h not in ids]
    model["history"] = [h for i, h in enumerate(kept) if i == 0 or h != kept[i - 1]]
    if model["active"] in ids:
        was_active = [v["version"] for v in model["versions"]
                      if v.get("activated") or v.get("kind") == "base"]
        model["active"] = (model["history"].pop() if model["history"]
                           else was_active[-1] if was_active else None)
    while model["history"] and model["history"][-1] == model["active"]:
        model["history"].pop()  # rolling back to the active version would change nothing


def removed_next(index: dict[str, Any], name: str) -> int:
    """The first version number a model named `name` may use again after a whole model of that
    name was removed (the index's "removed" record; 1 if none, or unreadable)."""
    removed = index.get("removed")
    value = removed.get(name) if isinstance(removed, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 1
