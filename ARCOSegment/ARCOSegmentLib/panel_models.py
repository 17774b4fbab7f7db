"""The panel's device line and model section: background queries to the engine (device, the
registry's versions, import, roll back) and preparing the chosen model in the warm worker.
`Panel` (ARCOSegmentLib.panel) is built on it; no Slicer import.
"""

from __future__ import annotations

from typing import Any, Callable

from ARCOSegmentLib.device import DeviceInfo, cpu_warning, describe, device_args
from ARCOSegmentLib.engine import check_args
from ARCOSegmentLib.events import EngineError
from ARCOSegmentLib.models import (ModelEntry, active_entry, format_entry, is_model_folder,
                                   models_args, parse_models_list)

NO_REGISTRY = "No model registry yet: choose a model folder below."


class ModelSection:
    """The device line and the model list of the panel. It uses the panel's `ui`, `logic`,
    `timer`, `queries`, `models`, `_prepared`, `choose_folder`, `log` and `report_error`."""

    def _query(self, args: list[str], on_result: Callable[[Any], None],
               on_error: Callable[[Exception], None] | None = None, cpu_only: bool = False) -> None:
        def done(result, error):
            if error is None:
                on_result(result)
            else:
                (on_error or self.report_error)(error)
        try:
            self.queries.append(self.logic.engine(args, cpuOnly=cpu_only, wait=False,
                                                  onDone=done))
        except EngineError as err:
            done(None, err)
        self.timer.start()

    def refresh_device(self) -> None:
        """Ask the engine which device a run would use (with the CPU override if ticked)."""
        cpu_only = bool(self.ui.forceCpuCheckBox.checked)
        self.ui.deviceLabel.text = "Detecting…"
        self._query(device_args(cpu_only),
                    lambda result: self._show_device(DeviceInfo.from_result(result), cpu_only),
                    on_error=self._show_device_error, cpu_only=cpu_only)

    def _show_device(self, info: DeviceInfo, forced: bool) -> None:
        self.ui.deviceLabel.text = describe(info)
        warning = cpu_warning(info, forced)
        self.ui.cpuWarningLabel.text = warning
        self.ui.cpuWarningLabel.visible = bool(warning)

    def _show_device_error(self, error: Exception) -> None:
        self.ui.deviceLabel.text = "Engine not ready (press Segment to set it up)."
        self.log(f"Device check: {error}")

    def refresh_models(self) -> None:
        """Reload the model list from the registry."""
        self._query(models_args("list"), self._show_models, on_error=self._show_no_registry)

    def _show_models(self, result: dict[str, Any]) -> None:
        self.models = parse_models_list(result)
        self.ui.modelsListWidget.clear()
        for entry in self.models:
            self.ui.modelsListWidget.addItem(format_entry(entry))
        active = active_entry(self.models)
        self.ui.modelsListWidget.setCurrentRow(self.models.index(active) if active else -1)

    def _show_no_registry(self, error: Exception) -> None:
        self.models = []
        self.ui.modelsListWidget.clear()
        self.ui.modelsListWidget.addItem(NO_REGISTRY)
        self.log(f"Model registry: {error}")

    def selected_model(self) -> Any:
        """The model folder typed in, else the selected version, else None (the active one)."""
        folder = self.ui.modelFolderPathLineEdit.currentPath
        if folder:
            return folder
        row = self.ui.modelsListWidget.currentRow
        return self.models[row] if 0 <= row < len(self.models) else None

    def prepare_model(self, *_signal: Any) -> None:
        """With the warm worker running, load the chosen model there and prepare its kernels
        now (`models check`), so that the first Segment with it starts at once; the log says
        when it is ready or what is wrong with it. Sent once per model folder, device and
        worker (a list refresh that selects the same model again sends nothing); not for a
        folder being typed (each keystroke would send one), nor without a worker (a one-shot
        process keeps nothing loaded)."""
        model = self.selected_model()
        if isinstance(model, ModelEntry):
            folder = model.path
        else:
            folder = model if model and is_model_folder(model) else None
        worker = self.logic.startWorker() if self.logic.useWorker and folder else None
        cpu_only = bool(self.ui.forceCpuCheckBox.checked)
        if worker is None or self._prepared == (folder, cpu_only, worker):
            return
        self._prepared = (folder, cpu_only, worker)
        self._query(check_args(folder, cpu_only=cpu_only), lambda result: self.log(
            f"Model ready: {folder} (loaded in {result['load_seconds']:.1f} s, first pass "
            f"{result['first_pass_seconds']:.1f} s)."),
            on_error=lambda error: self.log(f"Model check: {error}"), cpu_only=cpu_only)

    def on_import_model(self) -> None:
        """Import a model folder into the registry."""
        folder = self.choose_folder()
        if folder:
            self._query(models_args("import", folder), lambda result: self.refresh_models())

    def on_rollback_model(self) -> None:
        """Re-activate the previous version of the selected (or active) model."""
        row = self.ui.modelsListWidget.currentRow
        entry = self.models[row] if 0 <= row < len(self.models) else active_entry(self.models)
        if entry is not None:
            self._query(models_args("rollback", entry.name), lambda result: self.refresh_models())
