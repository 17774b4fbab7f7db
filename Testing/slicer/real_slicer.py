"""Slicer's real core for the tests: the `slicer-core` wheel's MRML scene, module logics and
storage nodes, wired into the `slicer` module the way the application wires them.

slicer-core holds Slicer's C++ MRML libraries and `slicer.util`, but not the application: no
`slicer.mrmlScene`, no `slicer.modules`, no `slicer.app`, no Qt. `install` sets the first two to
real objects (a vtkMRMLScene with the application logic, the Volumes, Segmentations, Markups and
Colors logics, and the three slice views with their slice logics, as the layout manager creates
them) and gives `slicer.app` a core IO manager that reads and writes through the same storage
nodes and reader logic as the application's readers and writers (qSlicerVolumesReader,
qSlicerSegmentationsReader, qSlicerNodeWriter). Only that glue is hand-written here; every node,
conversion and file format is Slicer's own.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import slicer
import vtk

SEGMENTATION_FILE, VOLUME_FILE = "SegmentationFile", "VolumeFile"
# An application home without colour files (HOME/share/ColorFiles), for the Colors logic
_EMPTY_HOME = tempfile.TemporaryDirectory(prefix="slicer-core-home-")
(Path(_EMPTY_HOME.name) / "share" / "ColorFiles").mkdir(parents=True)


class CoreIOManager:
    """The part of qSlicerCoreIOManager that `slicer.util` load/save functions call."""

    def __init__(self, scene, app_logic) -> None:
        self.scene, self.app_logic = scene, app_logic

    def fileType(self, filename) -> str:
        return SEGMENTATION_FILE if str(filename).lower().endswith(".seg.nrrd") else VOLUME_FILE

    def fileWriterFileType(self, node) -> str:
        return SEGMENTATION_FILE if node.IsA("vtkMRMLSegmentationNode") else VOLUME_FILE

    def loadNodes(self, filetype, properties, loaded, messages) -> bool:
        path = str(properties["fileName"])
        name = properties.get("name") or Path(path).name.split(".")[0]
        if filetype == SEGMENTATION_FILE:  # qSlicerSegmentationsReader
            node = self.app_logic.GetModuleLogic("Segmentations").LoadSegmentationFromFile(
                path, bool(properties.get("autoOpacities", True)), name)
        else:  # qSlicerVolumesReader: bit 0 of the options = load as a label map
            node = self.app_logic.GetModuleLogic("Volumes").AddArchetypeVolume(
                path, name, int(bool(properties.get("labelmap", False))))
        if node is None:
            messages.AddMessage(vtk.vtkCommand.ErrorEvent, f"Could not read {path}.")
            return False
        loaded.AddItem(node)
        return True

    def saveNodes(self, filetype, properties, messages) -> bool:
        """qSlicerNodeWriter: the node's storage node (the default one if none) writes it."""
        node = self.scene.GetNodeByID(properties["nodeID"])
        storage = node.GetStorageNode()
        if storage is None:
            node.AddDefaultStorageNode()
            storage = node.GetStorageNode()
        storage.SetFileName(str(properties["fileName"]))
        storage.SetUseCompression(int(properties.get("useCompression", 1)))
        return bool(storage.WriteData(node))


@dataclass
class SlicerCore:
    """What `install` set up: the scene, the application logic and the slice nodes."""

    scene: object
    app_logic: object
    slice_nodes: dict[str, object]

    def logic(self, module: str):
        return self.app_logic.GetModuleLogic(module)

    def slice_offsets(self) -> dict[str, np.ndarray]:
        """Each slice view's centre (RAS): where a jump put it."""
        return {name: np.array([node.GetSliceToRAS().GetElement(r, 3) for r in range(3)])
                for name, node in self.slice_nodes.items()}

    def add_roi(self, ras_bounds) -> object:
        """An ROI markup (vtkMRMLMarkupsROINode) spanning RAS bounds (xmin, xmax, ymin, …)."""
        roi = self.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "ROI")
        lo, hi = np.asarray(ras_bounds[0::2], float), np.asarray(ras_bounds[1::2], float)
        roi.SetCenter(*((lo + hi) / 2))
        roi.SetSize(*(hi - lo))
        return roi

    def add_linear_transform(self, matrix: np.ndarray) -> object:
        """A linear transform node (parent-to-world `matrix`, 4×4)."""
        node = self.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Transform")
        node.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(np.asarray(matrix, float)))
        return node


# Module logics in the order the application sets them up; Colors last, so that its default
# colour tables stay in the scene the others were given.
MODULE_LOGICS = (("Volumes", "vtkSlicerVolumesLogic"),
                 ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
                 ("Markups", "vtkSlicerMarkupsLogic"),
                 ("Colors", "vtkSlicerColorLogic"))


def install(monkeypatch) -> SlicerCore:
    """A fresh real scene as `slicer.mrmlScene`, real logics as `slicer.modules.X.logic()`, and
    `slicer.app.coreIOManager()`; undone by `monkeypatch` after the test."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    # colour files are not in the wheel; the built-in colour tables (Labels, …) are enough
    app_logic.SetHomeDirectory(_EMPTY_HOME.name)
    app_logic.SetShareDirectory("share")
    app_logic.SetMRMLScene(scene)
    modules = {}
    for name, class_name in MODULE_LOGICS:
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(name, logic)
        logic.SetMRMLScene(scene)
        modules[name.lower()] = SimpleNamespace(logic=lambda logic=logic: logic)
    layout = slicer.vtkMRMLLayoutLogic()
    layout.SetMRMLScene(scene)  # creates the Red, Yellow and Green slice nodes
    slice_nodes, slice_logics = {}, vtk.vtkCollection()
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        slice_logic = slicer.vtkMRMLSliceLogic()
        slice_logic.SetMRMLApplicationLogic(app_logic)
        slice_logic.SetMRMLScene(scene)
        slice_logic.SetSliceNode(node)
        slice_logics.AddItem(slice_logic)
        slice_nodes[node.GetName()] = node
    app_logic.SetSliceLogics(slice_logics)
    app = SimpleNamespace(coreIOManager=lambda io=CoreIOManager(scene, app_logic): io,
                          _keep=(layout, slice_logics))
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "modules", SimpleNamespace(**modules), raising=False)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    return SlicerCore(scene, app_logic, slice_nodes)
