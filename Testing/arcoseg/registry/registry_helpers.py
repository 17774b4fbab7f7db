"""Helpers of the registry tests: what `arcoseg adapt` does with the registry, folder contents."""

from __future__ import annotations

from pathlib import Path

from tiny_models import save_tiny

from arcoseg.registry import Registry, VersionRef

HELD_OUT = {"parent_dice": 0.61, "adapted_dice": 0.74}


def adapt(registry: Registry, name: str, parent: VersionRef | None, seed: int = 1,
          activate: bool = True) -> VersionRef:
    """What `arcoseg adapt` does with the registry: save a new model into a staged version."""
    with registry.stage_version(name, parent) as staged:
        save_tiny(staged.path, seed=seed,
                  provenance={"method": "arco-adapt", "held_out": HELD_OUT})
        staged.activate = activate
    return staged.ref


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`: relative POSIX path -> bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def staging_areas(home: Path) -> list[Path]:
    """The staging folders left in the registry home `home` (none after a clean stage)."""
    staging = home / "staging"
    return sorted(staging.iterdir()) if staging.is_dir() else []
