"""The extension's files: valid Python for Slicer's 3.12, no engine-only import at module load,
no `slicer` import at module level in the helpers, CMake lists every file, 128×128 icons."""

from __future__ import annotations

import ast
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "ARCOSegment"
LIB_DIR = MODULE_DIR / "ARCOSegmentLib"
MODULE_FILE = MODULE_DIR / "ARCOSegment.py"
SCRIPTS = sorted((MODULE_DIR / "Scripts").glob("*.py"))
LIB_FILES = sorted(LIB_DIR.glob("*.py"))
PYTHON_FILES = [MODULE_FILE, *LIB_FILES, *SCRIPTS]

# What only the engine's process may import (heavy, GPU state, or not shipped with Slicer).
ENGINE_ONLY = {"arcoseg", "torch", "monai", "safetensors", "scipy", "tqdm", "matplotlib",
               "filelock", "nibabel"}
SLICER_ONLY = {"slicer", "qt", "ctk", "vtkITK", "PyTorchUtils"}
REMOVED_IN_PY312 = {"imp", "distutils", "asynchat", "asyncore", "smtpd"}


def top_level_imports(path: Path) -> set[str]:
    """Root names imported when the file is loaded (not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def all_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: p.name)
def test_files_compile_and_use_nothing_removed_in_python_312(path):
    source = path.read_text(encoding="utf-8")
    compile(source, str(path), "exec")
    assert not all_imports(path) & REMOVED_IN_PY312


def runs(interpreter: str) -> bool:
    return subprocess.run([interpreter, "-c", "pass"], capture_output=True).returncode == 0


def python312() -> str | None:
    """A Python 3.12 interpreter (Slicer 5.10's version), if this machine has one."""
    pyenv = glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))
    for candidate in (shutil.which("python3.12"), *pyenv):
        if candidate and runs(candidate):
            return candidate
    return None


def test_files_compile_with_python_312():
    interpreter = python312()
    if interpreter is None:
        pytest.skip("no Python 3.12 interpreter here")
    code = "import sys\nfor f in sys.argv[1:]: compile(open(f, encoding='utf-8').read(), f, 'exec')"
    subprocess.run([interpreter, "-c", code, *map(str, PYTHON_FILES)], check=True)


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: p.name)
def test_nothing_engine_only_is_imported_at_module_load(path):
    assert not top_level_imports(path) & ENGINE_ONLY


@pytest.mark.parametrize("path", LIB_FILES, ids=lambda p: p.name)
def test_helpers_import_slicer_only_inside_functions(path):
    assert not top_level_imports(path) & SLICER_ONLY


def test_importing_every_helper_loads_neither_slicer_nor_the_engine():
    """A real import in a fresh interpreter (the module's view of the world)."""
    code = ("import sys; import ARCOSegmentLib; "
            "[__import__(f'ARCOSegmentLib.{m}') for m in ARCOSegmentLib.MODULES]; "
            f"print(sorted(set(sys.modules) & set({sorted(ENGINE_ONLY | SLICER_ONLY)!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=MODULE_DIR, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_reload_order_lists_every_helper():
    import ARCOSegmentLib
    assert sorted(ARCOSegmentLib.MODULES) == sorted(p.stem for p in LIB_FILES if p.stem != "__init__")


def test_module_file_holds_only_the_slicer_classes_and_delegates_the_work():
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    bases = {n.name: [ast.unparse(b) for b in n.bases]
             for n in tree.body if isinstance(n, ast.ClassDef)}
    assert bases == {"ARCOSegment": ["ScriptedLoadableModule"],
                     "ARCOSegmentParameterNode": [],  # @parameterNodeWrapper
                     "ARCOSegmentWidget": ["ScriptedLoadableModuleWidget", "VTKObservationMixin"],
                     "ARCOSegmentLogic": ["EngineLogic", "ScriptedLoadableModuleLogic"],
                     "ARCOSegmentTest": ["ScriptedLoadableModuleTest"]}
    assert not [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    methods = [f for n in tree.body if isinstance(n, ast.ClassDef) for f in n.body
               if isinstance(f, ast.FunctionDef)]
    long = [f.name for f in methods if f.end_lineno - f.lineno > 25]
    assert long == [] and len(MODULE_FILE.read_text(encoding="utf-8").splitlines()) < 200


def test_the_slicer_logic_is_the_engine_logic_with_slicers_base_cooperatively_initialised():
    """ARCOSegmentLogic(EngineLogic, ScriptedLoadableModuleLogic): both __init__ run."""
    from ARCOSegmentLib.logic import MODULE_DIR as LOGIC_MODULE_DIR
    from ARCOSegmentLib.logic import EngineLogic

    class ScriptedLoadableModuleLogic:  # Slicer's, as far as the constructor goes
        def __init__(self, parent=None):
            super().__init__()
            self.moduleName = type(self).__name__[:-len("Logic")]

    class ARCOSegmentLogic(EngineLogic, ScriptedLoadableModuleLogic):
        pass
    logic = ARCOSegmentLogic(engineEnvironment={"ARCOSEG_HOME": "/h"})
    assert logic.moduleName == "ARCOSegment" and logic.engineEnvironment == {"ARCOSEG_HOME": "/h"}
    assert LOGIC_MODULE_DIR == MODULE_DIR


def cmake_list(text: str, variable: str) -> list[str]:
    block = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)[1]
    return [line.strip().replace("${MODULE_NAME}", "ARCOSegment")
            for line in block.splitlines() if line.strip()]


def test_module_cmake_packages_every_script_and_resource_and_registers_the_self_test():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    scripts = cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    expected = sorted(str(p.relative_to(MODULE_DIR)) for p in PYTHON_FILES)
    assert sorted(scripts) == expected
    resources = cmake_list(text, "MODULE_PYTHON_RESOURCES")
    assert sorted(resources) == sorted(str(p.relative_to(MODULE_DIR))
                                       for p in (MODULE_DIR / "Resources").rglob("*") if p.is_file())
    assert all((MODULE_DIR / f).is_file() for f in scripts + resources)
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert "ARCOSegmentEngine" in text  # the bundled engine (dependencies.find_engine)


def test_extension_cmake_has_the_required_fields():
    text = (REPO / "CMakeLists.txt").read_text()
    for needed in ("cmake_minimum_required(", "project(ARCOSegment)", "EXTENSION_HOMEPAGE",
                   "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                   "EXTENSION_SCREENSHOTURLS", 'set(EXTENSION_DEPENDS "PyTorch")',
                   "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                   "add_subdirectory(ARCOSegment)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                   "include(${Slicer_EXTENSION_CPACK})"):
        assert needed in text, needed
    for url_field in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        url = re.search(rf'{url_field} "([^"]+)"', text)[1]
        assert (REPO / url.split("/main/", 1)[1]).is_file()


ICONS = [MODULE_DIR / "Resources/Icons/ARCOSegment.png", REPO / "Resources/Icons/ARCOSegment.png"]


@pytest.mark.parametrize("path", ICONS, ids=["module", "extension"])
def test_icons_are_128_pixel_pngs(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (128, 128)
