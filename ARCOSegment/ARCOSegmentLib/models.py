"""The model registry as the panel shows it (`arcoseg models … --progress json`). No Slicer.

The registry lives under $ARCOSEG_HOME: `models list` → result {"home", "versions": [{"name",
"version" ("v3"), "ref" ("liver@v3"), "kind" ("base" | "adapted"), "parent", "created", "active",
"classes", "path", ...}]}; `models show SPEC` → one version (SPEC: NAME, NAME@VERSION or a
folder). `segment` takes a model folder, so the panel uses each version's "path".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

MODEL_FILE = "model.json"
REGISTRY_ACTIONS = ("list", "show", "activate", "rollback", "import", "export", "remove")


@dataclass(frozen=True)
class ModelEntry:
    """One model version in the registry."""

    name: str
    version: str
    active: bool = False
    created: str = ""
    parent: str = ""
    path: str = ""
    kind: str = "base"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelEntry:
        """Parse one version of `models list` / `models show`."""
        return cls(name=str(data.get("name", "")), version=str(data.get("version", "")),
                   active=bool(data.get("active", False)), created=str(data.get("created") or ""),
                   parent=str(data.get("parent") or ""), path=str(data.get("path") or ""),
                   kind=str(data.get("kind") or ("adapted" if data.get("parent") else "base")))

    @property
    def ref(self) -> str:
        """The reference the registry commands take: NAME@VERSION."""
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def adapted(self) -> bool:
        """True for a version made by adapting another one."""
        return bool(self.parent)


def models_args(action: str, *args: str | Path) -> list[str]:
    """Arguments of a registry command, e.g. models_args('rollback', 'liver')."""
    if action not in REGISTRY_ACTIONS:
        raise ValueError(f"Unknown models action '{action}'; "
                         f"use one of {', '.join(REGISTRY_ACTIONS)}.")
    return ["models", action, *map(str, args)]


def parse_models_list(result: Mapping[str, Any]) -> list[ModelEntry]:
    """The versions of a `models list` result, newest first."""
    return sort_newest_first(ModelEntry.from_dict(v) for v in result.get("versions", []))


def sort_newest_first(entries) -> list[ModelEntry]:
    """Newest first: by creation time, then by version number."""
    def key(entry: ModelEntry):
        version = entry.version.lstrip("vV")
        return (entry.created, version.isdigit(), int(version) if version.isdigit() else 0, version)
    return sorted(entries, key=key, reverse=True)


def format_entry(entry: ModelEntry) -> str:
    """One line of the model list, e.g.
    '★ liver v3 · adapted from liver@2 · 2026-01-05 14:03 · active'."""
    version = entry.version if entry.version.lower().startswith("v") else f"v{entry.version}"
    parts = [f"{'★ ' if entry.active else ''}{entry.name} {version}",
             f"adapted from {entry.parent}" if entry.adapted else entry.kind]
    if entry.created:
        parts.append(entry.created.replace("T", " ")[:16])
    if entry.active:
        parts.append("active")
    return " · ".join(parts)


def active_entry(entries: Sequence[ModelEntry]) -> ModelEntry | None:
    """The active version, if any."""
    return next((e for e in entries if e.active), None)


def is_model_folder(path: object) -> bool:
    """True for a folder holding a model (model.json), which `segment` takes directly."""
    return isinstance(path, (str, Path)) and bool(path) and (Path(path) / MODEL_FILE).is_file()


_WINDOWS_DEVICE = re.compile(r"(?i)CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9]")


def model_name_for(class_names: Sequence[str]) -> str:
    """A registry name for a new model, from its classes: ['Left kidney', 'Liver'] →
    'Left_kidney-Liver'. The engine's rule (arcoseg.registry.names.check_name): letters,
    digits, '.', '_', '-', 100 at most, not starting with '-' or '.', not ending in '.', and
    not a device name Windows reserves (CON, AUX, COM1, ...: those get '-model' appended)."""
    parts = (re.sub(r"[^A-Za-z0-9._-]+", "_", n.strip()).strip("._") for n in class_names)
    name = "-".join(p for p in parts if p)[:100].strip(".").lstrip("-.") or "model"
    return f"{name}-model" if _WINDOWS_DEVICE.fullmatch(name.split(".")[0]) else name

