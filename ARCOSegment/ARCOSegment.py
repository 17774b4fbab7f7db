"""ARCOSegment: segment volumes with a label-efficient model and adapt it from a few drawn slices.

The four Slicer classes only wire Slicer to ARCOSegmentLib: the work is in `logic.EngineLogic`
(the engine runs as a child process, PythonSlicer -m arcoseg …), the panel's behaviour in
`panel.Panel`, the scene access in `mrml`, and the self-test's scenario in `selftest`.
"""

import importlib
import shutil
import sys
import tempfile
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

import ARCOSegmentLib
from ARCOSegmentLib import selftest
from ARCOSegmentLib.logic import EngineLogic
from ARCOSegmentLib.panel import CONNECTIONS, Panel


class ARCOSegment(ScriptedLoadableModule):
    """Module description."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ARCOSegment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["ARCOSegment developers"]
        self.parent.helpText = (
            "Segment a volume with a trained model, then improve the model for your data: paint "
            "the structures on a few slices and press <b>Adapt model</b>. The model is adapted "
            "with ARCO semi-supervised learning, checked on a held-out slice, and the next slices "
            "worth annotating are suggested. Heavy work runs in a separate process; Cancel stops "
            "it. See the <a href='https://github.com/ARCOSegment/ARCOSegment'>documentation</a>.")
        self.parent.acknowledgementText = (
            "ARCO: C. You et al., 'Rethinking Semi-Supervised Medical Image Segmentation: A "
            "Variance-Reduction Perspective', NeurIPS 2023. Built on PyTorch, MONAI and SimpleITK.")


@parameterNodeWrapper
class ARCOSegmentParameterNode:
    """The panel's state, saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    roi: vtkMRMLMarkupsROINode
    outputSegmentation: vtkMRMLSegmentationNode
    annotationSegmentation: vtkMRMLSegmentationNode
    useCpu: bool = False
    showUncertainty: bool = False
    fromScratch: bool = False
    timeBudgetSeconds: Annotated[int, WithinRange(10, 86400)] = 300


class ARCOSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the .ui and connects it to ARCOSegmentLib.panel.Panel, which does the rest."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ARCOSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ARCOSegmentLogic()
        # One warm engine process for every command (Settings key ARCOSegment/UseEngineWorker:
        # false runs a new process per command). It starts with the first query below.
        self.logic.useWorker = slicer.util.settingsValue(
            "ARCOSegment/UseEngineWorker", True, converter=slicer.util.toBool)
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self.panel = Panel(
            self.ui, self.logic, self._timer,
            show_error=lambda text: slicer.util.errorDisplay(text, windowTitle="ARCOSegment"),
            choose_folder=lambda: qt.QFileDialog.getExistingDirectory(
                self.parent, "Import an ARCOSegment model folder"))
        self._timer.connect("timeout()", self.panel.poll)
        for widget, signal, slot in CONNECTIONS:
            getattr(self.ui, widget).connect(signal, getattr(self.panel, slot))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.panel.refresh_device()
        self.panel.refresh_models()

    def onReload(self):
        for name in ARCOSegmentLib.MODULES:  # dependency order
            module = sys.modules.get(f"ARCOSegmentLib.{name}")
            if module is not None:
                importlib.reload(module)
        ScriptedLoadableModuleWidget.onReload(self)

    def cleanup(self):
        if self.panel is not None:
            self.panel.cancel_all()
        if self.logic is not None:
            self.logic.stopWorker()  # the warm engine process ends with the module
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:  # stop reacting until the module is entered again
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.panel.update_buttons)

    def onSceneStartClose(self, caller, event):
        if self.panel is not None and self.panel.job is not None:
            self.panel.cancel()  # its result belongs to this scene, not to the next one
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass(
                "vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self.panel.update_buttons)
        self._parameterNode = self.panel.parameters = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                             self.panel.update_buttons)
            self.panel.update_buttons()


class ARCOSegmentLogic(EngineLogic, ScriptedLoadableModuleLogic):
    """All the work, without the widget (ARCOSegmentLib.logic.EngineLogic), plus the parameter
    node. Blocking use from any Slicer Python script: `ARCOSegmentLogic().segment(volumeNode)`."""

    def getParameterNode(self):
        return ARCOSegmentParameterNode(super().getParameterNode())


class ARCOSegmentTest(ScriptedLoadableModuleTest):
    """Slicer self-test (Slicer --testing): ARCOSegmentLib.selftest's scenario on the scene — a
    generated volume, two drawn slices → a new model, segment with it, adapt it from two more
    slices, check the segments. CPU, a few minutes."""

    def setUp(self):
        slicer.mrmlScene.Clear()
        self.home = tempfile.mkdtemp(prefix="ARCOSegmentTest-")

    def tearDown(self):
        shutil.rmtree(self.home, ignore_errors=True)

    def runTest(self):
        self.setUp()
        try:
            self.test_SegmentAndAdapt()
        finally:
            self.tearDown()

    def test_SegmentAndAdapt(self):
        logic = ARCOSegmentLogic(engineEnvironment={"ARCOSEG_HOME": self.home})
        self.assertTrue(logic.ensureDependencies(confirm=False))
        selftest.segment_and_adapt(self, logic, say=self.delayDisplay)
        self.delayDisplay("Test passed")
