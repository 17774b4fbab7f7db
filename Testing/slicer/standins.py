"""Stand-ins for what the slicer-core wheel lacks: the panel's Qt widgets as PythonQt shows them
and the Qt timer. (The scene, nodes and logics are Slicer's real ones: real_slicer.py.) Also the
shared test data: an oblique grid and the shape of an `adapt` result."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np

UI_FILE = Path(__file__).resolve().parents[2] / "ARCOSegment/Resources/UI/ARCOSegment.ui"


# I → A (0.8 mm), J → -R (0.6 mm), K → -S (2.5 mm): oblique to the file axes, anisotropic
OBLIQUE = np.array([[0.0, -0.6, 0.0, 10.0],
                    [0.8, 0.0, 0.0, -20.0],
                    [0.0, 0.0, -2.5, 40.0],
                    [0.0, 0.0, 0.0, 1.0]])


# The shape of a real `adapt` result (arcoseg/adapt/run.py: finish), abridged.
ADAPT_RESULT = {
    "model": {"name": "liver", "version": "v4", "ref": "liver@v4", "kind": "adapted",
              "parent": "liver@v3", "created": "2026-03-02T14:03:09+00:00", "active": True,
              "classes": [{"name": "background", "value": 0, "color": [0, 0, 0]},
                          {"name": "liver", "value": 1, "color": [255, 0, 0]}],
              "registered": True, "path": "/r/models/liver/versions/v4"},
    "heldout": {"slice": 17, "parent_dice": 0.71, "adapted_dice": 0.802, "activated": True},
    "axis": 0, "annotated_slices": [[12, 30]], "suggested_slices": [23, 7, 41],
    "suggestions": [{"slice": 23, "uncertainty": 0.41}, {"slice": 7, "uncertainty": 0.38},
                    {"slice": 41, "uncertainty": 0.2}],
    "iterations": 400, "seconds": 118.4,
    "outputs": [{"image": "/w/image.nii.gz", "labels": "/w/labels.nii.gz"}]}


# -- the panel's widgets, as PythonQt shows them -------------------------------------------------


class StandInWidget:
    """A widget with PythonQt-style properties (`w.text = …`, `w.enabled`, …)."""

    def __init__(self, name: str, text: str = "") -> None:
        self.objectName, self.text = name, text
        self.enabled = self.visible = True
        self.checked = False
        self.currentIndex = self.value = 0
        self.maximum = 100
        self.currentPath = ""


class StandInListWidget(StandInWidget):
    """QListWidget: items are their texts' holders, `row(item)` finds them."""

    def __init__(self, name: str, text: str = "") -> None:
        super().__init__(name, text)
        self.items: list[SimpleNamespace] = []
        self.currentRow = -1

    def clear(self) -> None:
        self.items, self.currentRow = [], -1

    def addItem(self, text: str) -> None:
        self.items.append(SimpleNamespace(text=text))

    def item(self, row: int):
        return self.items[row]

    def row(self, item) -> int:
        return next(i for i, it in enumerate(self.items) if it is item)

    def setCurrentRow(self, row: int) -> None:
        self.currentRow = row

    @property
    def texts(self) -> list[str]:
        return [it.text for it in self.items]


class StandInTextEdit(StandInWidget):
    """QPlainTextEdit.appendPlainText."""

    def __init__(self, name: str, text: str = "") -> None:
        super().__init__(name, text)
        self.lines: list[str] = []

    def appendPlainText(self, line: str) -> None:
        self.lines.append(line)


class StandInCheckableNodeComboBox(StandInWidget):
    """qMRMLCheckableNodeComboBox.checkedNodes."""

    def __init__(self, name: str, text: str = "") -> None:
        super().__init__(name, text)
        self.nodes: list = []

    def checkedNodes(self) -> list:
        return list(self.nodes)


STANDIN_CLASSES = {"QListWidget": StandInListWidget, "QPlainTextEdit": StandInTextEdit,
                   "qMRMLCheckableNodeComboBox": StandInCheckableNodeComboBox}


def standin_ui(ui_file: Path = UI_FILE) -> SimpleNamespace:
    """Every named widget of the .ui as a stand-in of its class, with its text from the file
    (what `slicer.util.childWidgetVariables` gives the widget)."""
    widgets = {}
    for w in ET.parse(ui_file).getroot().iter("widget"):
        cls = STANDIN_CLASSES.get(w.get("class"), StandInWidget)
        text = w.findtext("property[@name='text']/string") or ""
        widgets[w.get("name")] = cls(w.get("name"), text)
    return SimpleNamespace(**widgets)


class StandInTimer:
    """qt.QTimer's start/stop; the test calls the panel's `poll` while it is active."""

    def __init__(self) -> None:
        self.active = False

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


def drive(panel, timer: StandInTimer, until=None, seconds: float = 60.0) -> None:
    """Call the panel's `poll` as the Qt timer would, until the timer stops (or `until()`)."""
    deadline = time.monotonic() + seconds
    while timer.active and not (until and until()):
        assert time.monotonic() < deadline, "the panel did not finish in time"
        panel.poll()
        time.sleep(0.01)
