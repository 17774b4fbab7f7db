"""The panel's .ui: loads with PySide6's QUiLoader offscreen, holds every widget the code uses,
binds the parameter node, connects every node selector to the scene; its preview renders."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

import ui_preview
from ARCOSegmentLib.panel import CONNECTIONS, Panel

MODULE_FILE = ui_preview.REPO / "ARCOSegment" / "ARCOSegment.py"
PANEL_FILES = [ui_preview.REPO / "ARCOSegment" / "ARCOSegmentLib" / name
               for name in ("panel.py", "panel_models.py")]
SELECTORS = ("qMRMLNodeComboBox", "qMRMLCheckableNodeComboBox")


@pytest.fixture(scope="module")
def panel():
    widget, error = ui_preview.load_ui_file()
    assert widget is not None and error == ""
    return widget


@pytest.fixture(scope="module")
def ui_tree():
    return ET.parse(ui_preview.UI_FILE).getroot()


def names_used_by_the_module() -> set[str]:
    """Widgets the module file and the panel touch (`self.ui.NAME`) or connect (CONNECTIONS)."""
    used = {widget for widget, _, _ in CONNECTIONS}
    for path in (MODULE_FILE, *PANEL_FILES):
        used |= set(re.findall(r"self\.ui\.(\w+)", path.read_text(encoding="utf-8")))
    return used


def parameter_node_fields() -> set[str]:
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body
               if isinstance(n, ast.ClassDef) and n.name == "ARCOSegmentParameterNode")
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_root_is_a_qmrmlwidget_with_the_panel_sections(ui_tree):
    root = ui_tree.find("widget")
    assert root.get("class") == "qMRMLWidget"
    sections = [w.find("property[@name='text']/string").text
                for w in root.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert sections == ["Inputs", "Model", "Segment", "Adapt model", "Log"]


def test_every_widget_the_module_uses_exists_in_the_loaded_panel(panel):
    used = names_used_by_the_module()
    assert len(used) > 20  # the parse found the widget references
    missing = sorted(n for n in used if panel.findChild(QWidget, n) is None)
    assert missing == []


def test_every_connection_joins_a_real_signal_to_a_panel_method(panel):
    for widget, signal, slot in CONNECTIONS:
        meta = panel.findChild(QWidget, widget).metaObject()
        name = signal.split("(")[0]
        signals = {bytes(meta.method(i).methodSignature()).decode().split("(")[0]
                   for i in range(meta.methodCount())}
        if meta.className() in ("QPushButton", "QToolButton", "QCheckBox", "QListWidget"):
            assert name in signals, (widget, signal)  # Slicer widgets load as their Qt base
        assert callable(getattr(Panel, slot)), slot


def test_parameter_node_fields_and_widgets_are_bound_both_ways(ui_tree, panel):
    bound = {w.get("name"): w.find("property[@name='SlicerParameterName']/string").text
             for w in ui_tree.iter("widget")
             if w.find("property[@name='SlicerParameterName']") is not None}
    assert set(bound.values()) == parameter_node_fields()
    for name, field in bound.items():
        assert panel.findChild(QWidget, name).property("SlicerParameterName") == field


def test_every_node_selector_gets_the_scene(ui_tree):
    selectors = {w.get("name") for w in ui_tree.iter("widget") if w.get("class") in SELECTORS}
    connected = {c.findtext("receiver") for c in ui_tree.iter("connection")
                 if c.findtext("sender") == "ARCOSegment"
                 and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert len(selectors) == 5 and selectors == connected


def test_custom_widgets_declare_their_base_classes(ui_tree):
    declared = {c.findtext("class"): c.findtext("extends") for c in ui_tree.iter("customwidget")}
    used = {w.get("class") for w in ui_tree.iter("widget")}
    custom = {c for c in used if not c.startswith("Q")}
    assert custom <= set(declared)
    assert declared["qMRMLWidget"] == "QWidget"


def test_preview_renders_a_non_blank_panel(tmp_path):
    out = ui_preview.render_preview(tmp_path / "panel.png")
    image = QImage(str(out))
    assert image.width() == 440 and image.height() > 600
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
               for y in range(0, image.height(), 7)}
    assert len(colours) > 20


def test_the_readme_screenshot_exists():
    assert ui_preview.SCREENSHOT.is_file() and ui_preview.SCREENSHOT.stat().st_size > 10_000
