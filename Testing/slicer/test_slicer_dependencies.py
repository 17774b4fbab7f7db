"""First-use dependency plan (real package metadata) and the install steps (Slicer stand-ins)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from ARCOSegmentLib import dependencies as deps

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "ARCOSegment"


def write_engine(folder: Path, version: str, requirements: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    quoted = ", ".join(f'"{r}"' for r in requirements)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "arcoseg"\nversion = "{version}"\ndependencies = [{quoted}]\n')
    return folder


def test_the_bundled_engine_is_found_next_to_the_module_or_in_the_source_checkout(tmp_path):
    assert deps.find_engine(MODULE_DIR) == (REPO / "training").resolve()
    installed = write_engine(tmp_path / "ARCOSegmentEngine", "1.0", [])
    assert deps.find_engine(tmp_path) == installed
    assert deps.find_engine(tmp_path / "elsewhere") is None


def test_real_engine_requirements_are_lower_bounds_read_from_its_pyproject():
    requirements = {r.name: r for r in deps.engine_requirements(REPO / "training")}
    assert {"torch", "monai", "SimpleITK", "safetensors"} <= set(requirements)
    assert all(not any(s.operator == "==" for s in r.specifier) for r in requirements.values())


def test_satisfaction_is_read_from_installed_metadata():
    assert deps.is_satisfied(Requirement("numpy>=1.0"))
    assert not deps.is_satisfied(Requirement("numpy>=999"))
    assert not deps.is_satisfied(Requirement("surely-not-installed-arcoseg-pkg"))
    assert deps.is_satisfied(Requirement("surely-not-installed-arcoseg-pkg; python_version < '3'"))


def test_plan_lists_missing_packages_never_simpleitk_and_an_outdated_engine(tmp_path):
    engine = write_engine(tmp_path / "e", "99.0", ["torch>=2.2", "numpy>=1.0", "SimpleITK>=99",
                                                   "surely-not-installed-arcoseg-pkg>=1"])
    plan = deps.make_plan(engine)
    assert plan.torch is None  # installed in this environment
    assert [r.name for r in plan.packages] == ["surely-not-installed-arcoseg-pkg"]
    assert plan.engine == engine and plan.needed
    text = plan.describe()
    assert "surely-not-installed-arcoseg-pkg>=1" in text and "never replaced" in text


def test_nothing_to_do_for_the_installed_engine_version_with_its_dependencies():
    plan = deps.make_plan(REPO / "training")
    assert not plan.needed and plan.engine is None


def test_missing_torch_goes_to_the_pytorch_extension(tmp_path):
    plan = deps.make_plan(write_engine(tmp_path / "e", "0", ["torch>=999"]))
    assert plan.torch == Requirement("torch>=999") and plan.packages == []


class FakeSlicer:
    """A stand-in for the parts of `slicer` the installer calls; records every call."""

    def __init__(self, monkeypatch, confirm=True, pip_ensure_in=None, torch_ok=True):
        self.calls = []
        slicer = types.ModuleType("slicer")
        slicer.__path__ = []
        slicer.util = types.SimpleNamespace(
            confirmOkCancelDisplay=lambda text, **kw: self.calls.append(("confirm", text)) or confirm,
            pip_install=lambda reqs: self.calls.append(("pip_install", reqs)))
        monkeypatch.setitem(sys.modules, "slicer", slicer)
        for name in ("slicer.packaging", "slicer.pydeps"):
            module = types.ModuleType(name)
            if name == pip_ensure_in:
                module.pip_ensure = lambda reqs, **kw: self.calls.append(("pip_ensure", reqs, kw))
            monkeypatch.setitem(sys.modules, name, module)
        torch_utils = types.ModuleType("PyTorchUtils")
        outer = self

        class Logic:
            def installTorch(self, **kw):
                outer.calls.append(("installTorch", kw))
                return object() if torch_ok else None
        torch_utils.PyTorchUtilsLogic = Logic
        monkeypatch.setitem(sys.modules, "PyTorchUtils", torch_utils)


PLAN = deps.InstallPlan(torch=Requirement("torch>=2.2"), packages=[Requirement("monai>=1.4")],
                        engine=Path("/ext/ARCOSegmentEngine"))


@pytest.mark.parametrize("where", ["slicer.packaging", "slicer.pydeps"])
def test_install_uses_pytorch_extension_then_pip_ensure_skipping_torch_and_simpleitk(
        monkeypatch, where):
    fake = FakeSlicer(monkeypatch, pip_ensure_in=where)
    assert deps.install(PLAN)
    kinds = [c[0] for c in fake.calls]
    assert kinds == ["confirm", "installTorch", "pip_ensure", "pip_install"]
    assert fake.calls[1][1] == {"askConfirmation": False, "torchVersionRequirement": ">=2.2"}
    _, reqs, kw = fake.calls[2]
    assert reqs == ["monai>=1.4"]
    assert kw["skip_packages"] == ["torch", "SimpleITK"] and kw["requester"] == "ARCOSegment"
    assert fake.calls[3][1] == ["--no-deps", "--force-reinstall", "/ext/ARCOSegmentEngine"]


def test_install_falls_back_to_pip_install_on_older_slicer(monkeypatch):
    fake = FakeSlicer(monkeypatch, pip_ensure_in=None)
    deps.install(deps.InstallPlan(packages=[Requirement("monai>=1.4")]))
    assert fake.calls[1] == ("pip_install", ["monai>=1.4"])


def test_declining_installs_nothing(monkeypatch):
    fake = FakeSlicer(monkeypatch, confirm=False, pip_ensure_in="slicer.packaging")
    assert deps.install(PLAN) is False
    assert [c[0] for c in fake.calls] == ["confirm"]


def test_torch_without_the_pytorch_extension_is_a_readable_error(monkeypatch):
    FakeSlicer(monkeypatch)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import fails
    with pytest.raises(RuntimeError, match="Extensions Manager"):
        deps.install(deps.InstallPlan(torch=Requirement("torch>=2.2")), confirm=False)
    FakeSlicer(monkeypatch, torch_ok=False)
    with pytest.raises(RuntimeError, match="could not be installed"):
        deps.install(deps.InstallPlan(torch=Requirement("torch>=2.2")), confirm=False)


def test_an_empty_plan_installs_nothing_and_asks_nothing(monkeypatch):
    fake = FakeSlicer(monkeypatch)
    assert deps.install(deps.InstallPlan())
    assert fake.calls == []


def test_an_empty_plan_needs_no_slicer(monkeypatch):
    """Nothing to install: True even where `import slicer` fails (headless, tests)."""
    monkeypatch.setitem(sys.modules, "slicer", None)
    assert deps.install(deps.InstallPlan(), confirm=True)
