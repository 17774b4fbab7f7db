"""Stand-ins for what Slicer provides, built from real vtk objects: volume, ROI and segmentation
nodes, the `mrml` functions on them, and the panel's widgets as PythonQt shows them."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import vtk

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import scene
from ARCOSegmentLib.segments import plan_segments

UI_FILE = Path(__file__).resolve().parents[2] / "ARCOSegment/Resources/UI/ARCOSegment.ui"


class StandInVolumeNode:
    """The methods of vtkMRMLScalarVolumeNode that the export uses: voxels in a vtkImageData
    with unit spacing and zero origin, geometry in an IJK-to-RAS vtkMatrix4x4."""

    def __init__(self, array: np.ndarray, ijk_to_ras: np.ndarray, name: str = "CT") -> None:
        self._image = cv.image_data_from_array(array)
        self._matrix = cv.numpy_to_vtk_matrix(ijk_to_ras)
        self._name = name

    def GetImageData(self):
        return self._image

    def GetIJKToRASMatrix(self, matrix: vtk.vtkMatrix4x4) -> None:
        matrix.DeepCopy(self._matrix)

    def GetName(self) -> str:
        return self._name


class StandInROINode:
    """vtkMRMLMarkupsROINode.GetRASBounds."""

    def __init__(self, bounds) -> None:
        self._bounds = list(bounds)

    def GetRASBounds(self, bounds) -> None:
        bounds[:] = self._bounds


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


# -- the scene: segmentation nodes and the `mrml` functions --------------------------------------


class StandInSegment:
    """A segment: name, colour and its binary labelmap as a vtkImageData on the volume's grid."""

    def __init__(self, name: str, color, mask: np.ndarray) -> None:
        self.name, self.color = name, tuple(color)
        self.labelmap = cv.image_data_from_array(mask.astype(np.uint8))

    @property
    def mask(self) -> np.ndarray:
        return cv.array_from_image_data(self.labelmap) > 0


class StandInSegmentationNode:
    """A segmentation node on one volume's grid: segment ID → StandInSegment, in order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.segments: dict[str, StandInSegment] = {}

    def GetName(self) -> str:
        return self.name


class StandInMRML:
    """ARCOSegmentLib.mrml's functions on stand-in nodes. The array and geometry work is the
    module's own (scene.result_indices, segments.plan_segments, conversions.slice_center_ras);
    only what Slicer's scene would store is replaced."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.jumps: list[tuple[object, int, int, np.ndarray]] = []  # (volume, axis, index, RAS)

    def segments_of(self, node) -> dict[str, str]:
        return {sid: s.name for sid, s in node.segments.items()}

    def segment_masks(self, node, indexed_ids, reference_volume):
        shape = scene.volume_shape(reference_volume)
        masks = [(index, node.segments[sid].mask) for sid, index in indexed_ids]
        assert all(m.shape == shape for _, m in masks)
        return masks

    def new_segmentation(self, volume_node, name=None):
        node = StandInSegmentationNode(name or f"{volume_node.GetName()} segmentation")
        self.nodes.append(node)
        return node

    def import_labels(self, labels_path, exported, classes, node, volume_node):
        indices = scene.result_indices(labels_path, exported, classes)
        for n, spec in enumerate(plan_segments(classes, self.segments_of(node)), start=1):
            node.segments[spec.segment_id] = StandInSegment(spec.name, spec.color, indices == n)
        return node

    def import_scalar_volume(self, path, exported, name, volume_node):
        node = StandInVolumeNode(scene.result_volume(path, exported), exported.ijk_to_ras, name)
        self.nodes.append(node)
        return node

    def jump_to_slice(self, volume_node, axis, index):
        point = cv.slice_center_ras(scene.volume_ijk_to_ras(volume_node),
                                    scene.volume_shape(volume_node), axis, index)
        self.jumps.append((volume_node, axis, index, point))

    def add_volume(self, array, ijk_to_ras, name):
        node = StandInVolumeNode(array, ijk_to_ras, name)
        self.nodes.append(node)
        return node

    def add_annotations(self, volume_node, name, segments):
        node = self.new_segmentation(volume_node, name)
        for segment_name, color, mask in segments:
            node.segments[segment_name] = StandInSegment(segment_name, color, mask)
        return node


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
