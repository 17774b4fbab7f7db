"""What a training run trains on: preprocessed labelled, unlabelled and validation cases."""

from __future__ import annotations

import filecmp
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import SimpleITK as sitk

from arcoseg.data.dataset import Case, DatasetInfo, load_dataset
from arcoseg.data.orientation import to_slicing_axis
from arcoseg.data.cache import load_cases
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import PreprocessedCase, make_plan, preprocess_image
from arcoseg.errors import ArcosegError, InputError
from arcoseg.fileutil import file_identity
from arcoseg.io.geometry import grid_difference, read_grid
from arcoseg.io.images import check_image, read_image
from arcoseg.io.inputs import image_inputs
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions


PATCH_EXCESS = 16  # a patch may hold up to this many times the largest image's voxels


@dataclass
class RunData:
    """Everything one run trains on: preprocessed cases, the plan, the classes, where from."""

    plan: Plan
    class_names: list[str]
    class_values: list[int]
    num_channels: int
    labelled: list[PreprocessedCase]
    unlabelled: list[PreprocessedCase]
    val: list[PreprocessedCase]  # empty: no validation, the final weights are kept
    provenance: dict[str, Any] = field(default_factory=dict)



def prepare_data(dataset_root: Path, options: TrainOptions, reporter: Reporter,
                 should_stop: Callable[[], bool] = lambda: False) -> RunData:
    """Load the dataset, choose labelled/unlabelled/validation cases, preprocess (cached);
    Cancelled between cases once `should_stop()` is true."""
    dataset = load_dataset(dataset_root)
    if options.unlabelled and dataset.num_channels != 1:
        channels = ", ".join(dataset.channel_names.values())
        raise InputError(f"--unlabelled: extra images have one channel, but {dataset.root} has "
                         f"{dataset.num_channels} per case ({channels}), so they cannot be used "
                         "with it. Leave out --unlabelled for this dataset.")
    labelled = dataset.labelled_cases(options.labelled, options.labelled_list)
    val = validation_cases(dataset, reporter)
    extra = (outside_dataset(unlabelled_files(options.unlabelled), dataset, val, reporter)
             if options.semi_supervised else [])  # refused before any preprocessing
    plan = make_plan(dataset, options.dims, options.patch, spacing=options.spacing,
                     context_slices=options.context_slices, reporter=reporter)

    unwritable: set[Path] = set()  # a cache found unwritable is said once per run

    def load(cases: list, what: str) -> list[PreprocessedCase]:
        reporter.log(f"Preparing {len(cases)} {what} case(s)")
        return load_cases(dataset, cases, plan, cache_dir=options.cache_dir, reporter=reporter,
                          unwritable=unwritable, should_stop=should_stop)

    unlabelled: list[PreprocessedCase] = []
    if options.semi_supervised:
        unlabelled = [without_label(c) for c in load(dataset.unlabelled_cases(labelled), "unlabelled")]
        unlabelled += extra_unlabelled(extra, plan, reporter)
        if not unlabelled:
            raise ArcosegError(f"--method {options.method} needs unlabelled data, but every "
                               f"training case of {dataset.root} is labelled. Use fewer --labelled "
                               "cases or --method supervised.")
    provenance = {"dataset": dataset.name, "dataset_path": str(dataset.root),
                  "labelled_cases": [c.id for c in labelled], "unlabelled_cases": len(unlabelled)}
    data = RunData(plan, dataset.class_names, dataset.class_values, dataset.num_channels,
                   load(labelled, "labelled"), unlabelled, load(val, "validation"), provenance)
    check_patch(plan, [*data.labelled, *data.unlabelled, *data.val])
    return data


def data_identity(data: RunData) -> dict[str, Any]:
    """What a resume must train on again, and every rank of a distributed run alike: the
    classes, the input channels, and the labelled, unlabelled and validation cases (by id: a
    dataset moved to another folder still resumes; a changed validation split would make the
    kept best model's choice meaningless)."""
    return {"classes": list(data.class_names), "channels": data.num_channels,
            "labelled_cases": list(data.provenance.get("labelled_cases", [])),
            "unlabelled_cases": sorted(c.case_id for c in data.unlabelled),
            "validation_cases": sorted(c.case_id for c in data.val)}


def validation_cases(dataset: DatasetInfo, reporter: Reporter) -> list[Case]:
    """The 'val' split, or none (logged) where the dataset defines it empty or not at all (a
    one-case dataset, splits with 'train' only): the run then keeps its final weights, as
    nnU-Net's fold 'all' does, instead of refusing to train."""
    try:
        return dataset.split_cases("val")
    except InputError:  # 'val' not defined, or empty
        reporter.log(f"Dataset {dataset.root} has no validation cases (no 'val' split, or an "
                     "empty one): training keeps its final weights.")
        return []


def check_patch(plan: Plan, cases: list[PreprocessedCase]) -> None:
    """InputError when the patch holds more than PATCH_EXCESS times the voxels of the largest
    image (its slices for a 2D model) on the plan's grid: smaller images are padded to the
    patch, so such a patch is mostly padding, and a patch of 4096 x 4096 exhausted 24 GB of
    memory before the first iteration instead of being refused."""
    extents = [case.image.shape[-plan.dims:] for case in cases]
    largest = max(extents, key=math.prod)
    if math.prod(plan.patch_size) > PATCH_EXCESS * math.prod(largest):
        patch = " x ".join(map(str, plan.patch_size))
        image = " x ".join(map(str, largest))
        raise InputError(f"--patch {patch} holds more than {PATCH_EXCESS} times the voxels of "
                         f"the largest image on the plan's grid ({image} at "
                         f"{plan.target_spacing} mm): it would be mostly padding and could "
                         f"exhaust the memory. Give a --patch about the image size, at most "
                         f"{image}.")


def extra_unlabelled(files: list[Path], plan: Plan, reporter: Reporter) -> list[PreprocessedCase]:
    """Preprocess extra unlabelled image files (`unlabelled_files`: single channel), oriented
    along the plan's slicing axis."""
    cases = []
    for i, path in enumerate(files, start=1):
        array, _ = preprocess_image([to_slicing_axis(read_image(path), plan.slice_axis)], plan)
        cases.append(PreprocessedCase(path.name, array, None, tuple(plan.target_spacing)))
        reporter.progress(i, len(files), "extra unlabelled images")
    return cases


def outside_dataset(files: list[Path], dataset: DatasetInfo, val: list[Case],
                    reporter: Reporter) -> list[Path]:
    """`files` (from --unlabelled) less the images of the dataset's train split (already in the
    labelled or unlabelled pool: logged once); InputError for a validation image (trained on,
    it would inflate the validation Dice that picks the kept model) or a label map (its label
    values read as intensities). Images of other splits (e.g. 'test') are kept."""
    val_images = {file_identity(p): c.id for c in val for p in c.images}
    label_maps = {file_identity(c.label): c.id for c in dataset.cases if c.label is not None}
    train_images = {file_identity(p) for c in dataset.split_cases("train") for p in c.images}
    kept, skipped = [], []
    for file in files:
        key = file_identity(file)
        if key in val_images:
            raise InputError(f"--unlabelled: {file} is validation case {val_images[key]!r} of "
                             f"{dataset.root}: trained on, it would inflate the validation Dice "
                             "that picks the kept model. Leave it out of --unlabelled.")
        if key in label_maps:
            raise InputError(f"--unlabelled: {file} is the label map of case "
                             f"{label_maps[key]!r}, not an image. Give images there.")
        if key in train_images:
            skipped.append(file.name)
            continue
        kept.append(file)
    if skipped:
        reporter.log(f"--unlabelled: {len(skipped)} file(s) ({', '.join(skipped[:3])}"
                     f"{', …' if len(skipped) > 3 else ''}) are training cases of "
                     f"{dataset.root}, already used; not added twice.")
    return kept


def unlabelled_files(paths: list[Path], label_maps: Sequence[Path] = ()) -> list[Path]:
    """The image files that --unlabelled names (files, folders of image files), each checked
    from its header (`io.images.check_image`) before any work; a folder without image files is
    one DICOM series (as --image and `segment` read it). InputError naming --unlabelled for a
    folder that is empty or holds neither, for a bad image, and for one of `label_maps` or a
    copy of one (the
    annotations: a label map read as an image would train on its label values as
    intensities; `_LabelMapCopies`)."""
    copies = _LabelMapCopies([Path(m) for m in label_maps])
    try:
        files = [file for path in paths for file in image_inputs(path)]
        for file in files:
            check_image(file)
        for file in files:
            label_map = copies.held_in(file)
            if label_map is not None:
                raise InputError(f"{file} is an annotation label map (--annotations "
                                 f"{label_map}), or a copy of one, not an image. Give the "
                                 "images without annotations there.")
    except InputError as err:
        raise InputError(f"--unlabelled: {err}") from err
    return files


class _LabelMapCopies:
    """Which label map a file holds: the same file, a byte-for-byte copy, or the same voxels on
    the same grid (a gzip-compressed or NRRD copy, say). Voxels are read only when the headers'
    grids agree: each label map's header and voxels at most once (kept), each file's at most
    once per call (`io.images.read_image`: a bad file is an InputError naming it)."""

    def __init__(self, label_maps: list[Path]) -> None:
        self.label_maps = label_maps
        self._label_grids = {label_map: read_grid(label_map) for label_map in label_maps}
        self._label_voxels: dict[Path, np.ndarray] = {}

    def held_in(self, file: Path) -> Path | None:
        """The label map `file` (an image file or a DICOM series folder) holds, or None."""
        if file.is_dir():
            return None  # a DICOM series: label maps are single files
        grid, voxels = read_grid(file), None
        for label_map in self.label_maps:
            if file.resolve() == label_map.resolve() or filecmp.cmp(file, label_map,
                                                                    shallow=False):
                return label_map
            other = self._label_grids[label_map]
            if grid is None or other is None or grid_difference(grid, other) is not None:
                continue
            if label_map not in self._label_voxels:
                self._label_voxels[label_map] = _voxels(label_map)
            voxels = _voxels(file) if voxels is None else voxels
            if np.array_equal(voxels, self._label_voxels[label_map]):
                return label_map
        return None


def _voxels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(read_image(path))


def without_label(case: PreprocessedCase) -> PreprocessedCase:
    """The same case as unlabelled data (its labels hidden)."""
    return PreprocessedCase(case.case_id, case.image, None, case.spacing_zyx)
