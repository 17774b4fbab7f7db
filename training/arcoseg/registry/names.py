"""Model names and version references of the registry: what a name may be, and the errors."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from arcoseg.errors import ArcosegError
from arcoseg.fileutil import expand_user

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
VERSION_ID = re.compile(r"v([1-9][0-9]*)")
# Windows refuses these as file or folder names, with or without an extension (CON, con.v2, ...);
# a model folder named so could not be created or copied there
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


class RegistryError(ArcosegError):
    """The registry cannot do what was asked (unknown model, refused removal, busy, damaged)."""


def registry_home() -> Path:
    """`$ARCOSEG_HOME`, else `~/.arcoseg`."""
    env = os.environ.get("ARCOSEG_HOME")
    return expand_user(env) if env else Path.home() / ".arcoseg"


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
    a model: the model then has no active version until one is activated explicitly). `ref` is
    set once the version is committed.
    """

    path: Path
    activate: bool = True
    ref: VersionRef | None = field(default=None, init=False)


def check_name(name: str, hint: str = "") -> str:
    """`name` if it is a valid model name, else RegistryError: 1-100 letters, digits, '.', '_'
    or '-', starting with a letter, digit or '_' (a leading '-' reads as a command-line option,
    a leading '.' as a hidden or relative path), not ending in '.' (Windows drops trailing dots
    from folder names), and not a name Windows reserves (CON, NUL, COM1...), since every model
    is a folder named after it."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(f"Invalid model name {name!r}: use 1-100 letters, digits, '.', '_' or "
                            f"'-', starting with a letter, digit or '_' (e.g. 'brain-mri')."
                            f"{hint}")
    if name.endswith("."):
        raise RegistryError(f"Invalid model name {name!r}: a name may not end in '.', since "
                            f"Windows drops trailing dots and the model's folder would be "
                            f"{name.rstrip('.')!r} there. Drop the trailing dot or end the name "
                            f"in a letter, digit, '_' or '-'.{hint}")
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        raise RegistryError(f"Invalid model name {name!r}: Windows reserves "
                            f"{name.split('.')[0]!r} for a device, so no folder can have that "
                            f"name. Choose another (e.g. '{name}-model').{hint}")
    return name


def windows_form(name: str) -> str:
    """The folder Windows makes of `name`, case folded (Windows drops trailing dots and spaces
    and ignores case): two models with the same form would be one folder there."""
    return name.rstrip(". ").casefold()


def parse_ref(spec: str) -> tuple[str, str | None]:
    """(name, version) of the reference `NAME@VERSION`, (name, None) of a bare `NAME`;
    RegistryError when the text around an '@' is missing or holds another '@' (`NAME@` must
    never read as `NAME`: removing `NAME@` would remove the whole model)."""
    name, at, version = spec.partition("@")
    if not at:
        return name, None
    if not name or not version or "@" in version:
        example = f"{name or 'NAME'}@v1"
        raise RegistryError(f"Malformed model version {spec!r}: write NAME@VERSION with a name, "
                            f"one '@' and a version (e.g. {example!r}). Run `arcoseg models list` "
                            "to see the versions.")
    return name, version


def looks_like_path(spec: str) -> bool:
    """Whether `spec` is a path rather than a model name (a separator, '~' or '.' first)."""
    return any(sep and sep in spec for sep in (os.sep, os.altsep)) or spec.startswith(("~", "."))
