"""First-use dependency check and installation inside Slicer.

Nothing is installed at import time. The check reads package metadata only (it never imports torch
into Slicer's process). The plan: torch through the PyTorch extension (it picks the CUDA build that
matches the driver); the other engine dependencies with `pip_ensure(..., skip_packages=["torch",
"SimpleITK"])` where Slicer has it (5.11+: slicer.pydeps, later slicer.packaging), otherwise
`slicer.util.pip_install` after the user confirmed; the engine itself from the extension's own
files. pip never replaces Slicer's SimpleITK or the PyTorch extension's torch. `slicer` is imported
inside the functions that need it only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ENGINE_DISTRIBUTION = "arcoseg"
SKIP_PACKAGES = ("torch", "SimpleITK")  # from the PyTorch extension and from Slicer itself
ENGINE_FOLDERS = ("ARCOSegmentEngine", "../training")  # installed extension, source checkout


def find_engine(module_dir: str | Path) -> Path | None:
    """The bundled engine (the folder with its pyproject.toml) next to the module, if any."""
    for name in ENGINE_FOLDERS:
        candidate = (Path(module_dir) / name).resolve()
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return None


def _project(engine_dir: Path) -> dict:
    with open(engine_dir / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def engine_requirements(engine_dir: str | Path) -> list[Requirement]:
    """The engine's dependencies, from its pyproject.toml (lower bounds only)."""
    return [Requirement(r) for r in _project(Path(engine_dir)).get("dependencies", [])]


def is_satisfied(requirement: Requirement) -> bool:
    """True if an installed distribution satisfies `requirement` (read from metadata only)."""
    if requirement.marker is not None and not requirement.marker.evaluate():
        return True
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(installed, prereleases=True)


@dataclass
class InstallPlan:
    """What is missing: torch, other packages, and whether the bundled engine must be installed."""

    torch: Requirement | None = None
    packages: list[Requirement] = field(default_factory=list)
    engine: Path | None = None

    @property
    def needed(self) -> bool:
        """True if anything must be installed."""
        return bool(self.torch or self.packages or self.engine)

    def describe(self) -> str:
        """The text of the confirmation dialog."""
        lines = ["ARCOSegment needs to install (once, a few GB and several minutes):"]
        if self.torch:
            lines.append(f"• PyTorch ({self.torch}) through the PyTorch extension, matching "
                         "this computer's GPU driver")
        if self.packages:
            lines.append("• Python packages: " + ", ".join(str(r) for r in self.packages))
        if self.engine:
            lines.append(f"• the ARCOSegment engine from {self.engine}")
        lines.append("Slicer's own SimpleITK and PyTorch are never replaced. Continue?")
        return "\n".join(lines)


def make_plan(engine_dir: str | Path) -> InstallPlan:
    """Compare the engine's requirements and version with what is installed."""
    engine_dir = Path(engine_dir)
    plan = InstallPlan()
    for requirement in engine_requirements(engine_dir):
        name = canonicalize_name(requirement.name)
        if is_satisfied(requirement) or name == canonicalize_name("SimpleITK"):
            continue
        if name == "torch":
            plan.torch = requirement
        else:
            plan.packages.append(requirement)
    if not is_satisfied(Requirement(f"{ENGINE_DISTRIBUTION}=={_project(engine_dir)['version']}")):
        plan.engine = engine_dir
    return plan


def install(plan: InstallPlan, confirm: bool = True, requester: str = "ARCOSegment") -> bool:
    """Install what `plan` lists (inside Slicer). False if the user declined.

    RuntimeError with a readable message if torch cannot be installed.
    """
    if not plan.needed:
        return True
    import slicer
    if confirm and not slicer.util.confirmOkCancelDisplay(plan.describe(),
                                                          windowTitle="ARCOSegment dependencies"):
        return False
    if plan.torch is not None:
        _install_torch(plan.torch)
    if plan.packages:
        requirements = [str(r) for r in plan.packages]
        pip_ensure = _find_pip_ensure()
        if pip_ensure is not None:
            pip_ensure(requirements, skip_packages=list(SKIP_PACKAGES), prompt_install=False,
                       requester=requester)
        else:  # Slicer before pip_ensure: the user confirmed above
            slicer.util.pip_install(requirements)
    if plan.engine is not None:  # its dependencies were handled above
        slicer.util.pip_install(["--no-deps", "--force-reinstall", str(plan.engine)])
    importlib.invalidate_caches()
    return True


def _install_torch(requirement: Requirement) -> None:
    try:
        import PyTorchUtils
    except ImportError as err:
        raise RuntimeError("ARCOSegment needs the PyTorch extension to install PyTorch: install "
                           "'PyTorch' from the Extensions Manager, restart Slicer and try "
                           "again.") from err
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False, torchVersionRequirement=str(requirement.specifier))
    if torch is None:
        raise RuntimeError("PyTorch could not be installed. Install it from the PyTorch Utils "
                           "module, restart Slicer and try again.")


def _find_pip_ensure() -> Callable | None:
    """slicer.packaging.pip_ensure (newest) or slicer.pydeps.pip_ensure (5.11), else None."""
    for name in ("slicer.packaging", "slicer.pydeps"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure"):
            return module.pip_ensure
    return None
