"""The module's work: segment, adapt, models and device through the engine, without the widget.

`ARCOSegment.ARCOSegmentLogic` is this class plus Slicer's parameter node. With wait=True a call
blocks and returns its result (scripts, batch: no dialog); with wait=False it returns the started
EngineJob, which the panel polls from a timer. Every command runs in one warm engine worker
(`arcoseg serve`, ARCOSegmentLib.worker), started on first use and again if it stopped; with
useWorker=False, or when a worker cannot start, each command is a one-shot process. The scene is reached only through `self.mrml`
(ARCOSegmentLib.mrml inside Slicer; a stand-in built from real vtk objects in the tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ARCOSegmentLib import mrml as slicer_mrml
from ARCOSegmentLib import scene
from ARCOSegmentLib.annotations import Annotations, build_annotations, describe_annotations
from ARCOSegmentLib.dependencies import InstallPlan, find_engine, install, make_plan
from ARCOSegmentLib.device import DeviceInfo, device_args
from ARCOSegmentLib.engine import (AdaptOutput, EngineJob, adapt_args, parse_adapt_result,
                                   parse_segment_result, segment_args)
from ARCOSegmentLib.events import EngineError
from ARCOSegmentLib.models import (ModelEntry, is_model_folder, model_name_for, models_args,
                                   parse_models_list)
from ARCOSegmentLib.process import engine_command, engine_environment, python_executable
from ARCOSegmentLib.segments import match_annotation_segments, read_model_classes
from ARCOSegmentLib.worker import EngineWorker

MODULE_DIR = Path(__file__).resolve().parents[1]

Progress = Callable[[dict[str, Any]], None]
Log = Callable[[str], None]
OnDone = Callable[[Any, Exception | None], None]


@dataclass
class AdaptResult:
    """What Adapt gives back: the re-segmented node and the engine's report, whose held-out and
    suggested slices are indices along `output.axis` of the whole volume (not of the ROI crop)."""

    segmentation: object
    output: AdaptOutput

    @property
    def suggestedSlices(self) -> list[int]:
        """The next slices worth annotating, along `output.axis`."""
        return self.output.suggested_slices


def on_full_grid(output: AdaptOutput, exported: scene.ExportedVolume) -> AdaptOutput:
    """The report with its slice numbers moved from the exported (cropped) grid to the volume's."""
    def full(index: int) -> int:
        return exported.index_in_full(output.axis, index)
    return dataclasses.replace(
        output, suggested_slices=[full(s) for s in output.suggested_slices],
        heldout_slice=None if output.heldout_slice is None else full(output.heldout_slice))


def _check_inside_roi(annotations: Annotations, exported: scene.ExportedVolume,
                      log: Log | None) -> None:
    """ValueError if no annotated slice lies inside the ROI (the engine would name only its
    temporary file); `log` says which ones Adapt leaves out when some lie outside."""
    inside = exported.slices_inside(annotations.axis, annotations.slices)
    if len(inside) == len(annotations.slices):
        return
    drawn = f"{', '.join(map(str, annotations.slices))} along {'KJI'[annotations.axis]}"
    if not inside:
        raise ValueError(f"None of the annotated slices ({drawn}) lies inside the ROI. Move "
                         "the ROI over them, or adapt without an ROI.")
    if log is not None:
        log(f"Only slices {', '.join(map(str, inside))} of the annotated {drawn} lie inside the "
            "ROI; Adapt learns from those.")


class EngineLogic:
    """All the work, usable from any Python script in Slicer (and, with a stand-in `mrml`,
    outside it)."""

    def __init__(self, engineEnvironment: dict[str, str] | None = None, mrml: Any = None,
                 python: str | None = None, moduleDir: str | Path | None = None,
                 useWorker: bool = True) -> None:
        super().__init__()  # cooperative: ARCOSegmentLogic also derives from Slicer's Logic
        self.engineEnvironment = dict(engineEnvironment or {})  # e.g. {"ARCOSEG_HOME": folder}
        self.mrml = slicer_mrml if mrml is None else mrml
        self.python = python or python_executable()
        self.moduleDir = Path(moduleDir) if moduleDir else MODULE_DIR
        self.useWorker = useWorker
        self.worker: EngineWorker | None = None
        self._workerSettings: dict[str, str] = {}  # engineEnvironment the worker started with

    # -- setup -----------------------------------------------------------------------------------

    def dependencyPlan(self) -> InstallPlan:
        """What must be installed before the engine can run."""
        engineDir = find_engine(self.moduleDir)
        if engineDir is None:
            raise RuntimeError("The ARCOSegment engine is missing from the extension. Reinstall "
                               "the ARCOSegment extension.")
        return make_plan(engineDir)

    def ensureDependencies(self, confirm: bool = True) -> bool:
        """Install what the engine needs (asking first if `confirm`); False if declined."""
        return install(self.dependencyPlan(), confirm=confirm)

    # -- engine, device, models ------------------------------------------------------------------

    def engine(self, args: Sequence[str], cpuOnly: bool = False,
               finish: Callable[[dict[str, Any]], Any] | None = None,
               workDir: Path | None = None, wait: bool = True, progress: Progress | None = None,
               log: Log | None = None, onDone: OnDone | None = None):
        """Run `arcoseg ARGS` (in the worker if it is on); return finish(result) (wait=True) or
        the started job."""
        env = engine_environment(self.engineEnvironment, cpu_only=cpuOnly)
        worker = self.startWorker(log) if self.useWorker else None
        runner = None if worker is None else (
            lambda callbacks: worker.run(args, callbacks, fallback_env=env))
        job = EngineJob(engine_command(args, self.python), finish or (lambda result: result),
                        env=env, work_dir=workDir, progress=progress, log=log, on_done=onDone,
                        runner=runner)
        return job.wait() if wait else job.start()

    def startWorker(self, log: Log | None = None) -> EngineWorker | None:
        """The running engine worker, started if there is none (or it stopped: then `log` says
        so); None if it cannot start (the commands then run as one-shot processes)."""
        # the module's own settings decide, not the whole environment: a variable another
        # extension or script set in Slicer's process closed the worker and cancelled the
        # Adapt it ran ("Adapt cancelled", nobody had pressed Cancel)
        settings = dict(self.engineEnvironment)
        if self.worker is not None and self.worker.alive and self._workerSettings == settings:
            return self.worker
        previous, self.worker = self.worker, None
        if previous is not None and previous.alive:  # the module's settings changed
            previous.close()
        elif previous is not None and previous.ready.is_set() and log is not None:
            log(f"The engine worker had stopped (exit code {previous.returncode}); "
                "starting a new one.")
        try:
            self.worker = EngineWorker(self.python, engine_environment(settings)).start()
            self._workerSettings = settings
            weakref.finalize(self, self.worker.close)  # scripts: ends with the logic or Python
        except EngineError as err:
            if log is not None:
                log(f"{err} Running each command as its own process instead.")
        return self.worker

    def stopWorker(self) -> None:
        """End the engine worker (cancelling what it runs); the module calls this on close."""
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def deviceInfo(self, cpuOnly: bool = False) -> DeviceInfo:
        """The device a run would use."""
        return DeviceInfo.from_result(self.engine(device_args(cpuOnly), cpuOnly=cpuOnly))

    def listModels(self) -> list[ModelEntry]:
        """The registry's model versions, newest first."""
        return parse_models_list(self.engine(models_args("list")))

    def resolveModel(self, model: Any = None) -> tuple[Path, str]:
        """(model folder, reference for `adapt --model`) of `model`: a model folder, a ModelEntry,
        a registry NAME[@VERSION], or None for the active version of the only registered model."""
        if isinstance(model, ModelEntry):
            entry = model
        elif is_model_folder(model):
            return Path(model), str(model)
        elif model:
            entry = ModelEntry.from_dict(self.engine(models_args("show", str(model))))
        else:
            entry = self._onlyActiveModel()
        if not is_model_folder(entry.path):
            raise RuntimeError(f"Model '{entry.ref or model or 'active'}' has no usable model "
                               f"folder ({entry.path or 'none given'}). Import it again.")
        return Path(entry.path), entry.ref

    def _onlyActiveModel(self) -> ModelEntry:
        active = [e for e in self.listModels() if e.active]
        if len(active) != 1:
            found = ", ".join(e.name for e in active) or "none"
            raise RuntimeError(f"Choose a model (registered: {found}): select one in the Model "
                               "section, or give a model name or folder.")
        return active[0]

    # -- segment and adapt -----------------------------------------------------------------------

    def segment(self, volumeNode, model: Any = None, segmentationNode=None, roiNode=None,
                uncertainty: bool = False, cpuOnly: bool = False, wait: bool = True,
                progress: Progress | None = None, log: Log | None = None,
                onDone: OnDone | None = None):
        """Segment `volumeNode` into `segmentationNode` (new one if None): one segment per class,
        named and coloured after the model; re-running updates the same segments."""
        modelDir, _ = self.resolveModel(model)
        classes = read_model_classes(modelDir)
        if segmentationNode is not None:
            self.mrml.check_output_segmentation(segmentationNode, volumeNode)
        with self._workDir() as work:
            # NRRD, not NIfTI: it keeps a sheared (gantry-tilted) grid, which NIfTI would rotate
            exported = scene.export_volume(volumeNode, work / "image.nrrd",
                                           scene.roi_ras_bounds(roiNode))

            def finish(result):
                out = parse_segment_result(result)
                self.mrml.check_in_scene(volumeNode, segmentationNode)
                target = segmentationNode or self.mrml.new_segmentation(volumeNode)
                self.mrml.import_labels(out.labels, exported, classes, target, volumeNode)
                if out.entropy is not None:
                    self.mrml.import_scalar_volume(out.entropy, exported,
                                                   f"{volumeNode.GetName()} uncertainty",
                                                   volumeNode)
                return target

            args = segment_args(modelDir, exported.path, work / "labels.nrrd",
                                entropy=uncertainty, cpu_only=cpuOnly)
            return self.engine(args, cpuOnly, finish, work, wait, progress, log, onDone)

    def adapt(self, volumeNode, annotationNode, model: Any = None, fromScratch: bool = False,
              unlabelledVolumes: Sequence = (), axis: int | None = None,
              extraSlices: Sequence[int] = (), budgetSeconds: float = 300,
              iterations: int | None = None, modelName: str | None = None, roiNode=None,
              segmentationNode=None, cpuOnly: bool = False, wait: bool = True,
              progress: Progress | None = None, log: Log | None = None,
              onDone: OnDone | None = None):
        """Adapt `model` on the slices painted in `annotationNode` (or, `fromScratch`, train a new
        model whose classes are its segments), then re-segment into `segmentationNode` (a new
        node if None; never the annotations themselves). Returns an AdaptResult.

        A slice is annotated when any segment has voxels on it, or is in `extraSlices`; every
        other voxel is unannotated. `modelName` names a new model (default: from its classes)."""
        if segmentationNode is annotationNode:
            segmentationNode = None  # the result must not overwrite the clinician's drawing
        if segmentationNode is not None:
            self.mrml.check_output_segmentation(segmentationNode, volumeNode)
        segments = self.mrml.segments_of(annotationNode)
        if fromScratch:
            matched = [(sid, index) for index, sid in enumerate(segments, start=1)]
            modelRef, newClasses = None, list(segments.values())
            modelName = modelName or model_name_for(newClasses)
        else:
            modelDir, modelRef = self.resolveModel(model)
            classNames = [c.name for c in read_model_classes(modelDir)]
            matched, newClasses = match_annotation_segments(segments, classNames), None
        bounds = scene.roi_ras_bounds(roiNode)
        with self._workDir() as work:
            exported = scene.export_volume(volumeNode, work / "image.nrrd", bounds)
            annotations = build_annotations(exported.shape, self.mrml.segment_masks(
                annotationNode, matched, volumeNode), axis, extraSlices)
            _check_inside_roi(annotations, exported, log)
            annotationPath = scene.write_on_grid(annotations.labels, exported,
                                                 work / "annotations.nrrd")
            unlabelled = [scene.export_volume(v, work / f"unlabelled_{i}.nrrd", bounds).path
                          for i, v in enumerate(unlabelledVolumes)]

            def finish(result):
                out = on_full_grid(parse_adapt_result(result), exported)
                self.mrml.check_in_scene(volumeNode, segmentationNode)
                if out.labels is None:
                    raise RuntimeError(f"The engine adapted {out.model.ref} but wrote no "
                                       "segmentation; segment the volume with it.")
                target = segmentationNode or self.mrml.new_segmentation(volumeNode)
                self.mrml.import_labels(out.labels, exported, read_model_classes(out.model.path),
                                        target, volumeNode)
                return AdaptResult(target, out)

            args = adapt_args(exported.path, annotationPath, work / "labels.nrrd",
                              model=modelRef, new_classes=newClasses, name=modelName,
                              axis=annotations.axis, unlabelled=unlabelled,
                              budget_seconds=budgetSeconds, iterations=iterations,
                              cpu_only=cpuOnly)
            return self.engine(args, cpuOnly, finish, work, wait, progress, log, onDone)

    def annotationSummary(self, volumeNode, annotationNode, axis: int | None = None) -> str:
        """E.g. '2 slices annotated along K (axial): 12, 17'; ValueError if nothing is painted."""
        indexed = [(sid, 1) for sid in self.mrml.segments_of(annotationNode)]
        annotations = build_annotations(
            scene.volume_shape(volumeNode),
            self.mrml.segment_masks(annotationNode, indexed, volumeNode), axis)
        return describe_annotations(annotations.axis, annotations.slices,
                                    scene.volume_ijk_to_ras(volumeNode))

    def jumpToSlice(self, volumeNode, axis: int, index: int) -> None:
        """Centre the slice views on slice `index` along array axis `axis` of the volume."""
        self.mrml.jump_to_slice(volumeNode, axis, index)

    @contextlib.contextmanager
    def _workDir(self):
        """A temporary folder for the engine's files; the job removes it when it ends."""
        work = Path(tempfile.mkdtemp(prefix="ARCOSegment-"))
        try:
            yield work
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
