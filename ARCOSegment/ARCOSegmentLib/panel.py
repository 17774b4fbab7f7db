"""The panel's behaviour, without Slicer: the run state, the button that turns into Cancel,
progress and log, the model list, the device line, the annotation summary and Adapt's results.

`ARCOSegmentWidget` loads the .ui and builds a Panel from its widgets (`ui`, used with PythonQt's
property access: `ui.statusLabel.text = …`), the Logic, a timer (start/stop; its timeout calls
`poll`) and two dialogs, then connects the signals in CONNECTIONS and sets `panel.parameters` to
the parameter node. The tests drive a Panel built from stand-in widgets with the real engine.
"""

from __future__ import annotations

from typing import Any, Callable

from ARCOSegmentLib.annotations import parse_slices
from ARCOSegmentLib.events import EngineError
from ARCOSegmentLib.models import ModelEntry
from ARCOSegmentLib.panel_models import ModelSection

# (widget, Qt signal, Panel method): the widget connects each; PythonQt passes a slot only the
# signal arguments it accepts.
CONNECTIONS = (
    ("segmentButton", "clicked(bool)", "on_segment"),
    ("adaptButton", "clicked(bool)", "on_adapt"),
    ("refreshModelsButton", "clicked(bool)", "refresh_models"),
    ("importModelButton", "clicked(bool)", "on_import_model"),
    ("rollbackModelButton", "clicked(bool)", "on_rollback_model"),
    ("modelsListWidget", "currentRowChanged(int)", "prepare_model"),
    ("forceCpuCheckBox", "toggled(bool)", "prepare_model"),
    ("forceCpuCheckBox", "toggled(bool)", "refresh_device"),
    ("refreshAnnotationsButton", "clicked(bool)", "update_annotation_summary"),
    ("annotationSegmentationSelector", "currentNodeChanged(vtkMRMLNode*)",
     "update_annotation_summary"),
    ("axisComboBox", "currentIndexChanged(int)", "update_annotation_summary"),
    ("suggestedSlicesListWidget", "itemClicked(QListWidgetItem*)", "on_suggested_slice_clicked"),
)


def suggestion_text(axis: int, index: int) -> str:
    """A row of the suggested-slice list, e.g. 'Slice 23 along K'."""
    return f"Slice {index} along {'KJI'[axis]}"


class Panel(ModelSection):
    """What the panel does; the widget only wires Slicer to it."""

    def __init__(self, ui: Any, logic: Any, timer: Any, show_error: Callable[[str], None],
                 choose_folder: Callable[[], str]) -> None:
        self.ui, self.logic, self.timer = ui, logic, timer
        self.show_error, self.choose_folder = show_error, choose_folder
        self.parameters: Any = None  # the parameter node (ARCOSegmentParameterNode)
        self.job = None  # the running Segment / Adapt
        self.queries: list = []  # background device / registry commands
        self.models: list[ModelEntry] = []  # per row of the model list
        self.suggested: list[tuple[Any, int, int]] = []  # (volume, axis, index) per row
        self._running_button = None
        self._idle_text = ""
        self._dependencies_checked = False
        self._prepared: tuple | None = None  # (model folder, CPU only, worker) last prepared
        ui.cpuWarningLabel.visible = False

    def update_buttons(self, *_event) -> None:
        """Enable what can run now; the running button stays enabled as Cancel."""
        p = self.parameters
        ready = bool(p and p.inputVolume) and self.job is None
        self.ui.segmentButton.enabled = ready or self._running_button is self.ui.segmentButton
        self.ui.adaptButton.enabled = (ready and bool(p.annotationSegmentation)) or \
            self._running_button is self.ui.adaptButton

    # -- Segment / Adapt ------------------------------------------------------------------------

    def on_segment(self) -> None:
        """Segment (or cancel the running Segment)."""
        p = self.parameters
        self._run(self.ui.segmentButton, lambda: self.logic.segment(
            p.inputVolume, self.selected_model(), p.outputSegmentation, p.roi,
            uncertainty=p.showUncertainty, cpuOnly=p.useCpu, wait=False,
            progress=self._on_progress, log=self.log, onDone=self._on_segment_done))

    def _on_segment_done(self, segmentation, error) -> None:
        self._finished(error)
        if segmentation is not None and self.parameters is not None:
            self.parameters.outputSegmentation = segmentation
            self.status(f"Segmented {self.parameters.inputVolume.GetName()}.")

    def on_adapt(self) -> None:
        """Adapt the model from the painted slices (or cancel the running Adapt)."""
        if self.job is not None:
            self.cancel()
            return
        p = self.parameters
        try:
            extra_slices = parse_slices(self.ui.annotatedSlicesLineEdit.text)
        except ValueError as err:
            self.report_error(err)
            return
        volume = p.inputVolume
        self._run(self.ui.adaptButton, lambda: self.logic.adapt(
            volume, p.annotationSegmentation,
            model=None if p.fromScratch else self.selected_model(), fromScratch=p.fromScratch,
            unlabelledVolumes=list(self.ui.unlabelledVolumesComboBox.checkedNodes()),
            axis=self.chosen_axis(), extraSlices=extra_slices,
            budgetSeconds=p.timeBudgetSeconds, roiNode=p.roi,
            segmentationNode=p.outputSegmentation, cpuOnly=p.useCpu, wait=False,
            progress=self._on_progress, log=self.log,
            onDone=lambda result, error: self._on_adapt_done(volume, result, error)))

    def _on_adapt_done(self, volume, result, error) -> None:
        self._finished(error)
        if result is not None and self.parameters is not None:
            self.show_adapt_result(volume, result)

    def show_adapt_result(self, volume, result) -> None:
        """The held-out check, the suggested slices (clickable) and the new model list."""
        self.parameters.outputSegmentation = result.segmentation
        self.ui.heldoutLabel.text = result.output.summary()
        self.suggested = [(volume, result.output.axis, s) for s in result.suggestedSlices]
        self.ui.suggestedSlicesListWidget.clear()
        for _, axis, index in self.suggested:
            self.ui.suggestedSlicesListWidget.addItem(suggestion_text(axis, index))
        out = result.output
        self.log(f"{out.model.ref}: {out.iterations} iterations in {out.seconds:.0f} s; "
                 f"{out.heldout_check()}")
        self.status(f"Adapted: {out.model.ref}.")
        self.refresh_models()

    def on_suggested_slice_clicked(self, item) -> None:
        """Jump the slice views to the clicked suggestion."""
        volume, axis, index = self.suggested[self.ui.suggestedSlicesListWidget.row(item)]
        self.logic.jumpToSlice(volume, axis, index)

    def chosen_axis(self) -> int | None:
        """The array axis chosen under 'Slice axis' (0 = K, 1 = J, 2 = I), None for auto."""
        row = self.ui.axisComboBox.currentIndex  # "auto", then array axes 0 (K), 1 (J), 2 (I)
        return row - 1 if row > 0 else None

    def update_annotation_summary(self, *_signal: Any) -> None:
        """How many slices are annotated, along which axis (the one chosen, else detected)."""
        p = self.parameters
        if not (p and p.inputVolume and p.annotationSegmentation):
            self.ui.annotationSummaryLabel.text = "Choose the segmentation you painted on."
            return
        try:
            self.ui.annotationSummaryLabel.text = self.logic.annotationSummary(
                p.inputVolume, p.annotationSegmentation, self.chosen_axis())
        except ValueError as err:
            self.ui.annotationSummaryLabel.text = str(err)

    # -- running, progress, errors --------------------------------------------------------------

    def _run(self, button, start: Callable[[], Any]) -> None:
        """Start a job with `button` turned into Cancel, or cancel the running job."""
        if self.job is not None:
            self.cancel()
            return
        if not self._ensure_dependencies():
            return
        self.ui.progressBar.maximum = 0  # busy until the first progress event
        try:
            self.job = start()
        except Exception as err:  # bad inputs, unknown model, engine missing
            self.report_error(err)
            self._reset_progress()
            return
        self._running_button, self._idle_text = button, button.text
        button.text = "Cancel"
        self.update_buttons()
        self.timer.start()

    def cancel(self) -> None:
        """Stop the running job; its end (a 'Cancelled.' status) arrives through `poll`."""
        self.job.cancel()
        self.status("Cancelling…")

    def _finished(self, error: Exception | None) -> None:
        self.job = None
        if self._running_button is not None:
            self._running_button.text = self._idle_text
        self._running_button = None
        self._reset_progress(done=error is None)
        self.update_buttons()
        if isinstance(error, EngineError) and error.cancelled:
            self.status("Cancelled.")
        elif error is not None:
            self.report_error(error)

    def poll(self) -> None:
        """Timer tick: dispatch the engine events; stop the timer when nothing runs."""
        if self.job is not None:
            self.job.poll()
        self.queries = [q for q in self.queries if q.poll()]
        if self.job is None and not self.queries:
            self.timer.stop()

    def cancel_all(self) -> None:
        """Stop every engine process (the module is closing)."""
        for job in [self.job, *self.queries]:
            if job is not None:
                job.cancel()

    def _on_progress(self, event: dict[str, Any]) -> None:
        total = max(int(event.get("total") or 0), 1)
        self.ui.progressBar.maximum = total
        self.ui.progressBar.value = min(int(event.get("step") or 0), total)
        self.status(str(event.get("message") or ""))

    def _reset_progress(self, done: bool = False) -> None:
        self.ui.progressBar.maximum = 100
        self.ui.progressBar.value = 100 if done else 0

    def log(self, message: str) -> None:
        """A line in the log box."""
        self.ui.logTextEdit.appendPlainText(message)

    def status(self, message: str) -> None:
        """The status line."""
        self.ui.statusLabel.text = message

    def report_error(self, error: Exception) -> None:
        """Log the error, show its first line as the status, and the whole of it in a dialog."""
        text = str(error)
        self.log(f"Error: {text}")
        self.status(text.splitlines()[0] if text else "Error")
        self.show_error(text or type(error).__name__)

    def _ensure_dependencies(self) -> bool:
        if self._dependencies_checked:
            return True
        try:
            self._dependencies_checked = self.logic.ensureDependencies(confirm=True)
        except Exception as err:
            self.report_error(err)
        if self._dependencies_checked:
            self.refresh_device()
        return self._dependencies_checked
