"""The panel's behaviour (ARCOSegmentLib.panel) on stand-in widgets made from the .ui file:
Segment and Adapt run real child processes speaking the engine's protocol (fake_engine.py),
registry and device queries answer at once."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import numpy as np
import pytest

from ARCOSegmentLib import mrml
from ARCOSegmentLib.engine import EngineJob, parse_adapt_result
from ARCOSegmentLib.logic import AdaptResult, EngineLogic
from ARCOSegmentLib.panel import CONNECTIONS, Panel
from ARCOSegmentLib.panel_models import NO_REGISTRY
from ARCOSegmentLib.process import EngineError
from standins import ADAPT_RESULT, OBLIQUE, StandInTimer, drive, standin_ui

LISTING = {"versions": [
    {"name": "liver", "version": "v1", "created": "2026-01-01T10:00:00", "kind": "base",
     "path": "/r/liver/v1"},
    {"name": "liver", "version": "v2", "created": "2026-01-03T09:00:00", "parent": "liver@v1",
     "kind": "adapted", "active": True, "path": "/r/liver/v2"}]}
CPU = {"device": "cpu", "name": "CPU", "torch": "2.13.0+cpu", "cuda_version": "", "is_cpu": True}
GPU = {"device": "cuda", "name": "NVIDIA L40S", "torch": "2.13.0", "cuda_version": "12.8",
       "is_cpu": False}


class Answered:
    """A registry / device query that has already finished."""

    def __init__(self, answer, on_done) -> None:
        self.answer, self.on_done = answer, on_done

    def poll(self) -> bool:
        if isinstance(self.answer, Exception):
            self.on_done(None, self.answer)
        else:
            self.on_done(self.answer, None)
        return False

    def cancel(self) -> None:
        pass


class FakeLogic:
    """The Logic as the panel uses it (every call must fit EngineLogic's signature). Segment and
    Adapt start fake_engine.py in `mode`; registry and device queries answer at once."""

    def __init__(self, fake_engine, mode: str = "ok") -> None:
        self.fake_engine, self.mode = fake_engine, mode
        self.answers = {"device": CPU, "models": LISTING}
        self.calls, self.jumps = [], []
        self.dependencies = True
        self.useWorker = False
        self.worker = object()  # what startWorker returns while the worker runs

    def startWorker(self, log=None):
        inspect.signature(EngineLogic.startWorker).bind(self, log)
        return self.worker if self.useWorker else None

    def ensureDependencies(self, confirm=True):
        assert confirm
        if isinstance(self.dependencies, Exception):
            raise self.dependencies
        return self.dependencies

    def segment(self, volume, model, segmentation, roi, **options):
        inspect.signature(EngineLogic.segment).bind(self, volume, model, segmentation, roi,
                                                    **options)
        self.calls.append(("segment", model, options))
        return self._job(lambda result: "new segmentation", options)

    def adapt(self, volume, annotations, **options):
        inspect.signature(EngineLogic.adapt).bind(self, volume, annotations, **options)
        self.calls.append(("adapt", options))
        return self._job(lambda result: AdaptResult("adapted segmentation",
                                                    parse_adapt_result(ADAPT_RESULT)), options)

    def _job(self, finish, options):
        assert options["wait"] is False
        return EngineJob([*self.fake_engine, self.mode], finish, progress=options["progress"],
                         log=options["log"], on_done=options["onDone"], grace_seconds=0.5).start()

    def engine(self, args, cpuOnly=False, wait=True, onDone=None):
        assert wait is False and "onDone" in inspect.signature(EngineLogic.engine).parameters
        self.calls.append(("engine", args, cpuOnly))
        return Answered(self.answers[args[0]], onDone)

    def annotationSummary(self, volume, annotations, axis=None):
        along = {None: "K (axial)", 0: "K (axial)", 1: "J (coronal)", 2: "I (sagittal)"}[axis]
        return f"2 slices annotated along {along}: 4, 9"

    def jumpToSlice(self, volume, axis, index):
        self.jumps.append((volume, axis, index))


@pytest.fixture
def setup(fake_engine, slicer_core):
    """(panel, its stand-in widgets, the fake logic, the timer, the error dialogs shown); the
    parameter node's volume and annotations are real MRML nodes."""
    ui, logic, timer, errors = standin_ui(), FakeLogic(fake_engine), StandInTimer(), []
    panel = Panel(ui, logic, timer, show_error=errors.append, choose_folder=lambda: "/models/m")
    volume = mrml.add_volume(np.zeros((4, 5, 6), np.int16), OBLIQUE, "CT")
    panel.parameters = SimpleNamespace(
        inputVolume=volume, roi=None, outputSegmentation=None,
        annotationSegmentation=mrml.new_segmentation(volume, "Annotations"),
        useCpu=True, showUncertainty=False, fromScratch=False, timeBudgetSeconds=120)
    panel.update_buttons()
    return panel, ui, logic, timer, errors


def test_buttons_follow_the_inputs(setup):
    panel, ui, *_ = setup
    assert ui.segmentButton.enabled and ui.adaptButton.enabled
    panel.parameters.annotationSegmentation = None
    panel.update_buttons()
    assert ui.segmentButton.enabled and not ui.adaptButton.enabled
    panel.parameters.inputVolume = None
    panel.update_buttons()
    assert not ui.segmentButton.enabled and not ui.adaptButton.enabled


def test_segment_turns_its_button_into_cancel_then_shows_progress_and_the_result(setup):
    panel, ui, logic, timer, errors = setup
    panel.on_segment()
    assert ui.segmentButton.text == "Cancel" and ui.segmentButton.enabled
    assert not ui.adaptButton.enabled  # one run at a time
    assert ui.progressBar.maximum == 0 and timer.active  # busy until the first event
    drive(panel, timer)
    assert ui.segmentButton.text == "Segment" and ui.adaptButton.enabled
    assert (ui.progressBar.value, ui.progressBar.maximum) == (100, 100)
    assert panel.parameters.outputSegmentation == "new segmentation"
    assert ui.statusLabel.text == "Segmented CT."
    assert {"starting", "this line is not JSON", "a warning on stderr"} <= set(ui.logTextEdit.lines)
    assert errors == [] and panel.job is None
    [(_, model, options)] = [c for c in logic.calls if c[0] == "segment"]
    assert model is None and options["cpuOnly"] and not options["uncertainty"]


def test_the_progress_bar_and_status_follow_the_engines_events(setup):
    panel, ui, *_ = setup
    panel._on_progress({"event": "progress", "step": 4, "total": 10, "message": "training"})
    assert (ui.progressBar.value, ui.progressBar.maximum) == (4, 10)
    assert ui.statusLabel.text == "training"
    panel._on_progress({"event": "progress", "step": 12, "total": 0})
    assert (ui.progressBar.value, ui.progressBar.maximum) == (1, 1)


def test_cancel_stops_the_child_and_says_so_without_an_error_dialog(setup):
    panel, ui, logic, timer, errors = setup
    logic.mode = "tree"  # works until cancelled
    panel.on_adapt()
    assert ui.adaptButton.text == "Cancel" and not ui.segmentButton.enabled
    drive(panel, timer, until=lambda: ui.progressBar.maximum == 1000)
    job = panel.job
    panel.on_adapt()  # the button now reads Cancel
    assert ui.statusLabel.text == "Cancelling…"
    drive(panel, timer)
    assert job.finished and panel.job is None and not timer.active
    assert ui.statusLabel.text == "Cancelled." and errors == []
    assert ui.adaptButton.text == "Adapt model" and ui.progressBar.value == 0


def test_engine_errors_appear_as_readable_messages(setup):
    panel, ui, logic, timer, errors = setup
    logic.mode = "error"
    panel.on_segment()
    drive(panel, timer)
    assert errors == ["Input x.nii.gz does not exist. Check the path."]
    assert ui.statusLabel.text == errors[0] and ui.segmentButton.text == "Segment"
    assert f"Error: {errors[0]}" in ui.logTextEdit.lines


def test_bad_inputs_are_reported_and_nothing_starts(setup):
    panel, ui, logic, timer, errors = setup
    ui.annotatedSlicesLineEdit.text = "4, x"
    panel.on_adapt()
    assert "'x' is not a slice number" in errors[0] and panel.job is None
    logic.segment = lambda *a, **k: (_ for _ in ()).throw(ValueError("The ROI does not overlap "
                                                                      "the volume.\nMove it."))
    panel.on_segment()
    assert errors[1].startswith("The ROI does not overlap")
    assert ui.statusLabel.text == "The ROI does not overlap the volume."
    assert panel.job is None and ui.segmentButton.text == "Segment"
    assert ui.progressBar.maximum == 100


def test_nothing_runs_until_the_dependencies_are_installed(setup):
    panel, ui, logic, timer, errors = setup
    logic.dependencies = False  # the user declined
    panel.on_segment()
    assert panel.job is None and errors == []
    logic.dependencies = RuntimeError("ARCOSegment needs the PyTorch extension")
    panel.on_segment()
    assert panel.job is None and errors == ["ARCOSegment needs the PyTorch extension"]
    logic.dependencies = True
    panel.on_segment()
    assert panel.job is not None
    assert ("engine", ["device", "--device", "auto"], False) in logic.calls  # device re-checked
    drive(panel, timer)


def test_adapt_gets_the_panels_settings(setup):
    panel, ui, logic, timer, _ = setup
    unlabelled = mrml.add_volume(np.zeros((2, 2, 2)), np.eye(4), "CT 2")
    ui.unlabelledVolumesComboBox.nodes = [unlabelled]
    ui.annotatedSlicesLineEdit.text = "3, 5-6"
    ui.axisComboBox.currentIndex = 2  # J
    panel.refresh_models()
    drive(panel, timer)
    panel.on_adapt()
    drive(panel, timer)
    [(_, options)] = [c for c in logic.calls if c[0] == "adapt"]
    assert options["model"].ref == "liver@v2" and not options["fromScratch"]
    assert (options["axis"], options["extraSlices"], options["unlabelledVolumes"]) == \
        (1, [3, 5, 6], [unlabelled])
    assert (options["budgetSeconds"], options["cpuOnly"]) == (120, True)
    panel.parameters.fromScratch = True
    ui.axisComboBox.currentIndex = 0  # auto
    panel.on_adapt()
    drive(panel, timer)
    options = [c for c in logic.calls if c[0] == "adapt"][-1][1]
    assert options["model"] is None and options["fromScratch"] and options["axis"] is None


def test_adapt_result_shows_the_heldout_check_and_clickable_suggestions(setup):
    panel, ui, logic, timer, errors = setup
    volume = panel.parameters.inputVolume
    panel.on_adapt()
    drive(panel, timer)
    assert errors == [] and panel.parameters.outputSegmentation == "adapted segmentation"
    assert ui.heldoutLabel.text == \
        "liver@v4: held-out slice 17, Dice 0.710 → 0.802 (activated)"
    assert ui.suggestedSlicesListWidget.texts == ["Slice 23 along K", "Slice 7 along K",
                                                 "Slice 41 along K"]
    assert ui.statusLabel.text == "Adapted: liver@v4."
    assert ui.logTextEdit.lines[-1] == ("liver@v4: 400 iterations in 118 s; held-out slice 17, "
                                        "Dice 0.710 → 0.802 (activated)")
    assert logic.calls[-1] == ("engine", ["models", "list"], False)  # the list shows the new one
    panel.parameters.inputVolume = None  # the suggestions belong to the adapted volume
    panel.on_suggested_slice_clicked(ui.suggestedSlicesListWidget.item(1))
    assert logic.jumps == [(volume, 0, 7)]


def test_model_list_marks_and_selects_the_active_version(setup):
    panel, ui, logic, timer, _ = setup
    panel.refresh_models()
    drive(panel, timer)
    assert ui.modelsListWidget.texts == [
        "★ liver v2 · adapted from liver@v1 · 2026-01-03 09:00 · active",
        "liver v1 · base · 2026-01-01 10:00"]
    assert ui.modelsListWidget.currentRow == 0 and panel.selected_model().ref == "liver@v2"
    ui.modelsListWidget.setCurrentRow(1)
    assert panel.selected_model().ref == "liver@v1"
    ui.modelFolderPathLineEdit.currentPath = "/models/other"
    assert panel.selected_model() == "/models/other"  # a folder typed in wins


def test_choosing_a_model_prepares_it_in_the_warm_worker_once_and_says_when_it_is_ready(
        setup, tmp_path):
    panel, ui, logic, timer, _ = setup
    panel.refresh_models()
    drive(panel, timer)
    logic.answers["models"] = {"model": "/r/liver/v1", "load_seconds": 0.25,
                               "first_pass_seconds": 0.4}
    ui.modelsListWidget.setCurrentRow(1)
    logic.useWorker = True
    panel.prepare_model(1)  # Qt's currentRowChanged(int)
    drive(panel, timer)
    assert logic.calls[-1] == ("engine", ["models", "check", "/r/liver/v1", "--device", "auto"],
                               False)
    assert ui.logTextEdit.lines[-1] == ("Model ready: /r/liver/v1 (loaded in 0.2 s, first pass "
                                        "0.4 s).")
    asked = len(logic.calls)
    panel.prepare_model(1)  # the same model again (a list refresh): nothing to do
    assert len(logic.calls) == asked
    logic.answers["models"] = EngineError("model.safetensors is damaged", 2)
    ui.forceCpuCheckBox.checked = True
    panel.prepare_model(True)  # Qt's toggled(bool): the CPU copy is another model to prepare
    drive(panel, timer)
    assert logic.calls[-1][1][-2:] == ["--device", "cpu"] and logic.calls[-1][2] is True
    assert ui.logTextEdit.lines[-1] == "Model check: model.safetensors is damaged"
    asked = len(logic.calls)
    ui.modelFolderPathLineEdit.currentPath = str(tmp_path)  # typed in, no model there
    panel.prepare_model(1)
    ui.modelFolderPathLineEdit.currentPath = ""
    logic.worker = None  # the worker could not start: a one-shot check would keep nothing
    panel.prepare_model(0)
    assert len(logic.calls) == asked


def test_import_and_rollback_run_the_registry_commands_and_refresh_the_list(setup):
    panel, ui, logic, timer, _ = setup
    panel.refresh_models()
    drive(panel, timer)
    panel.on_rollback_model()  # the active version's model
    drive(panel, timer)
    panel.on_import_model()
    drive(panel, timer)
    commands = [c[1] for c in logic.calls if c[0] == "engine"]
    assert commands == [["models", "list"], ["models", "rollback", "liver"], ["models", "list"],
                        ["models", "import", "/models/m"], ["models", "list"]]


def test_without_a_registry_the_list_says_what_to_do(setup):
    panel, ui, logic, timer, errors = setup
    logic.answers["models"] = EngineError("Cannot read the registry index", 2)
    panel.refresh_models()
    drive(panel, timer)
    assert ui.modelsListWidget.texts == [NO_REGISTRY] and panel.selected_model() is None
    assert errors == [] and "Model registry: Cannot read the registry index" in ui.logTextEdit.lines


def test_device_line_and_the_loud_cpu_warning(setup):
    panel, ui, logic, timer, _ = setup
    panel.refresh_device()
    drive(panel, timer)
    assert ui.deviceLabel.text == "CPU · torch 2.13.0+cpu"
    assert ui.cpuWarningLabel.visible and "no GPU support" in ui.cpuWarningLabel.text
    ui.forceCpuCheckBox.checked = True
    panel.refresh_device()
    assert logic.calls[-1] == ("engine", ["device", "--device", "cpu"], True)
    drive(panel, timer)
    assert "override" in ui.cpuWarningLabel.text
    ui.forceCpuCheckBox.checked = False
    logic.answers["device"] = GPU
    panel.refresh_device()
    drive(panel, timer)
    assert ui.deviceLabel.text.startswith("NVIDIA L40S (cuda)") and not ui.cpuWarningLabel.visible
    logic.answers["device"] = EngineError("No module named torch")
    panel.refresh_device()
    drive(panel, timer)
    assert ui.deviceLabel.text.startswith("Engine not ready")


def test_annotation_summary_or_what_is_missing(setup):
    panel, ui, logic, *_ = setup
    panel.update_annotation_summary()
    assert ui.annotationSummaryLabel.text == "2 slices annotated along K (axial): 4, 9"
    ui.axisComboBox.currentIndex = 2  # J, chosen under 'Slice axis': the summary follows it
    panel.update_annotation_summary(2)  # as the combo box's currentIndexChanged(int) calls it
    assert ui.annotationSummaryLabel.text == "2 slices annotated along J (coronal): 4, 9"
    assert ("axisComboBox", "currentIndexChanged(int)", "update_annotation_summary") in \
        CONNECTIONS
    logic.annotationSummary = lambda *a: (_ for _ in ()).throw(ValueError("No voxel is annotated."))
    panel.update_annotation_summary()
    assert ui.annotationSummaryLabel.text == "No voxel is annotated."
    panel.parameters.annotationSegmentation = None
    panel.update_annotation_summary()
    assert ui.annotationSummaryLabel.text == "Choose the segmentation you painted on."


def test_closing_the_module_cancels_every_run(setup):
    panel, ui, logic, timer, _ = setup
    logic.mode = "tree"
    panel.on_segment()
    job = panel.job
    panel.cancel_all()
    drive(panel, timer)
    assert job.finished and ui.statusLabel.text == "Cancelled."
