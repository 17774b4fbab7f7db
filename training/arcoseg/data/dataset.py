"""Dataset folders (nnU-Net v2 and Medical Segmentation Decathlon layouts), splits and subsets.

nnU-Net v2: `dataset.json` with `labels` (name -> value), `file_ending` and `channel_names` (or
the older `modality`); images `imagesTr/<case>_<4-digit channel><ending>`, labels
`labelsTr/<case><ending>`. A label named 'ignore' marks unannotated voxels (nnU-Net's partial
labels). MSD: `dataset.json` with a `training` list of {"image", "label"} paths, `labels`
(value -> name) and `modality`. Optional extra keys in both: `splits` {name: [case ids]} and
`labelled_order` [ids]; an id matches a case whose id equals it or starts with id + '_'
(e.g. ACDC's 'patient099' matches 'patient099_frame01' and 'patient099_frame02').
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from arcoseg.constants import IGNORE_LABEL, IGNORE_NAME
from arcoseg.data.dataset_json import (channel_names, check_distinct_ids, check_ids,
                                       dataset_labels, matching_cases, read_dataset_json,
                                       require_key, resolve_splits)
from arcoseg.errors import InputError
from arcoseg.fileutil import full_suffix
from arcoseg.io.names import image_stem, unique_case_ids


@dataclass
class Case:
    """One training case: one image file per channel and an optional label map."""

    id: str
    images: list[Path]
    label: Path | None


@dataclass
class DatasetInfo:
    """A loaded dataset description; see the module docstring for the layouts."""

    root: Path
    name: str
    labels: dict[str, int]
    file_ending: str
    cases: list[Case]
    splits: dict[str, list[str]] | None = None
    labelled_order: list[str] | None = None
    channel_names: dict[str, str] = field(default_factory=lambda: {"0": "image"})

    @property
    def _classes(self) -> list[tuple[str, int]]:
        return sorted(((n, v) for n, v in self.labels.items() if n != IGNORE_NAME),
                      key=lambda item: item[1])

    @property
    def class_names(self) -> list[str]:
        """Class names ordered by label value (background first)."""
        return [name for name, _ in self._classes]

    @property
    def foreground_labels(self) -> dict[str, int]:
        """Class name → label value of every class but background (what evaluation scores)."""
        return {name: value for name, value in self._classes if value != 0}

    @property
    def evaluated_labels(self) -> dict[str, int]:
        """`foreground_labels`, plus the 'ignore' label if the dataset has one (evaluation
        leaves its voxels out, `evaluation.evaluate.evaluate_pairs`)."""
        ignore = {IGNORE_NAME: self.labels[IGNORE_NAME]} if IGNORE_NAME in self.labels else {}
        return {**self.foreground_labels, **ignore}

    @property
    def class_values(self) -> list[int]:
        """Label values in class order (index i of the network output <-> class_values[i])."""
        return [value for _, value in self._classes]

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self._classes)

    @property
    def num_channels(self) -> int:
        """Number of image channels per case."""
        return len(self.channel_names)

    @property
    def is_ct(self) -> bool:
        """True if any channel is named 'CT' (CT normalisation applies)."""
        return any(name.strip().upper() == "CT" for name in self.channel_names.values())

    def label_mapping(self) -> dict[int, int]:
        """Dataset label value -> contiguous class index (the 'ignore' label -> IGNORE_LABEL)."""
        mapping = {value: index for index, value in enumerate(self.class_values)}
        if IGNORE_NAME in self.labels:
            mapping[self.labels[IGNORE_NAME]] = IGNORE_LABEL
        return mapping

    def split_cases(self, name: str, val_fraction: float = 0.2, seed: int = 0) -> list[Case]:
        """The cases of split `name` (sorted by id).

        Uses `splits` from dataset.json when present; otherwise a deterministic random
        `val_fraction` of the cases is 'val' and the rest 'train'.
        """
        splits = self.splits or self._fallback_splits(val_fraction, seed)
        if name not in splits:
            raise InputError(f"Split '{name}' is not defined for dataset {self.root}; available: "
                             f"{', '.join(sorted(splits)) or 'none'}.")
        ids = set(splits[name])
        cases = [c for c in self.cases if c.id in ids]
        if not cases:
            raise InputError(f"Split '{name}' of dataset {self.root} is empty. Add cases to it "
                             "in dataset.json ('splits') or add more cases.")
        return cases

    def _fallback_splits(self, val_fraction: float, seed: int) -> dict[str, list[str]]:
        ids = sorted(c.id for c in self.cases)
        n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids)))) if val_fraction > 0 else 0
        order = np.random.default_rng(seed).permutation(len(ids))
        val = {ids[i] for i in order[:n_val]}
        return {"train": [i for i in ids if i not in val], "val": sorted(val)}

    def labelled_cases(self, n: int | None = None, list_file: str | os.PathLike | None = None,
                       val_fraction: float = 0.2, seed: int = 0) -> list[Case]:
        """The labelled subset of the train split, in order.

        Ids come from `list_file` (one per line, '#' comments), else `labelled_order`, else the
        train case ids sorted; the first `n` ids are used (all if None). An id matches a case
        equal to it or starting with id + '_' (so one patient id may give several cases).
        """
        train = self.split_cases("train", val_fraction, seed)
        if list_file is not None:
            entries, source = _read_id_list(Path(list_file)), str(list_file)
        elif self.labelled_order:
            entries, source = self.labelled_order, f"{self.root / 'dataset.json'} (labelled_order)"
        else:
            entries, source = sorted(c.id for c in train), "the train split"
        if n is not None:
            if n < 1:
                raise InputError(f"The number of labelled cases must be at least 1, not {n}.")
            if n > len(entries):
                raise InputError(f"Asked for {n} labelled cases but {source} lists only "
                                 f"{len(entries)}. Use a smaller number.")
            entries = entries[:n]
        chosen: dict[str, Case] = {}
        for entry in entries:
            matches = matching_cases(entry, train)
            if not matches:
                raise InputError(f"Labelled id '{entry}' from {source} matches no case of the "
                                 "train split. Fix the id or the splits.")
            chosen.update((c.id, c) for c in matches)
        return list(chosen.values())

    def unlabelled_cases(self, labelled: Iterable[Case], val_fraction: float = 0.2,
                         seed: int = 0) -> list[Case]:
        """The train cases not in `labelled` (the unlabelled pool for semi-supervised methods)."""
        taken = {c.id for c in labelled}
        return [c for c in self.split_cases("train", val_fraction, seed) if c.id not in taken]


def evaluated_labels(json_path: Path) -> dict[str, int]:
    """`DatasetInfo.evaluated_labels` from a dataset.json alone (`evaluate --labels`): its
    images need not be beside it."""
    labels = dataset_labels(read_dataset_json(json_path), json_path)
    return DatasetInfo(json_path.parent, "", labels, "", []).evaluated_labels


def load_dataset(root: str | os.PathLike) -> DatasetInfo:
    """Load a dataset folder in nnU-Net v2 or MSD layout; InputError for anything inconsistent."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Dataset folder {root} does not exist.")
    json_path = root / "dataset.json"
    if not json_path.is_file():
        raise InputError(f"{json_path} not found: a dataset folder needs a dataset.json "
                         "(nnU-Net v2 or Medical Segmentation Decathlon format).")
    meta = read_dataset_json(json_path)
    if "training" in meta:
        info = _load_msd(root, meta, json_path)
    elif "file_ending" in meta:
        info = _load_nnunet(root, meta, json_path)
    else:
        raise InputError(f"{json_path} has neither 'file_ending' (nnU-Net v2) nor 'training' "
                         "(Medical Segmentation Decathlon); add the missing key.")
    if not info.cases:
        raise InputError(f"Dataset {root} has no cases: imagesTr is empty or missing.")
    info.splits = resolve_splits(meta.get("splits"), info.cases, json_path)
    info.labelled_order = check_ids(meta.get("labelled_order"), info.cases, json_path,
                                     "labelled_order")
    return info


def _load_nnunet(root: Path, meta: dict, json_path: Path) -> DatasetInfo:
    labels = dataset_labels(meta, json_path)
    ending = require_key(meta, "file_ending", str, json_path)
    channels = channel_names(meta, json_path, ("channel_names", "modality"))
    files = _files_with_ending(root / "imagesTr", ending)
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    found: dict[str, dict[int, Path]] = {}
    for path in files:
        match = pattern.match(path.name)
        if match is None:
            raise InputError(f"{path} does not follow the nnU-Net naming <case>_<4-digit channel>"
                             f"{ending}. Rename it.")
        found.setdefault(match.group(1), {})[int(match.group(2))] = path
    cases = []
    for case_id in sorted(found):
        images = []
        for ch in range(len(channels)):
            if ch not in found[case_id]:
                raise InputError(f"Case '{case_id}' has no channel {ch} file "
                                 f"{root / 'imagesTr' / f'{case_id}_{ch:04d}{ending}'} "
                                 f"({json_path} lists {len(channels)} channels).")
            images.append(found[case_id][ch])
        extra = sorted(ch for ch in found[case_id] if ch >= len(channels))
        if extra:  # a channel dataset.json forgot, or a stray file: never dropped silently
            raise InputError(f"Case '{case_id}' has channel {extra[0]} file "
                             f"{found[case_id][extra[0]]}, but {json_path} lists "
                             f"{len(channels)} channel(s) in 'channel_names'. List every "
                             "channel there, or move the extra files out of imagesTr.")
        cases.append(Case(case_id, images, _label_file(root / "labelsTr" / f"{case_id}{ending}")))
    _check_orphan_labels(root / "labelsTr", ending, {c.id for c in cases})
    return DatasetInfo(root=root, name=str(meta.get("name", root.name)), labels=labels,
                       file_ending=ending, cases=cases, channel_names=channels)


def _load_msd(root: Path, meta: dict, json_path: Path) -> DatasetInfo:
    labels = dataset_labels(meta, json_path)
    channels = channel_names(meta, json_path, ("modality", "channel_names"))
    if len(channels) != 1:
        raise InputError(f"{json_path} lists {len(channels)} modalities: multi-channel (4D) "
                         "Decathlon images are not supported. Convert the dataset to the nnU-Net "
                         "v2 layout (one file per channel), e.g. with "
                         "nnUNetv2_convert_MSD_dataset.")
    entries = require_key(meta, "training", list, json_path)
    cases = []
    for entry in entries:
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise InputError(f"{json_path}: every 'training' entry needs 'image' and 'label' "
                             f"paths; found {entry!r}.")
        image = root / entry["image"]
        if not image.is_file():
            raise InputError(f"Image {image} listed in {json_path} ('training') does not exist.")
        cases.append(Case(image_stem(image), [image], _label_file(root / entry["label"])))
    unique_case_ids([c.images[0] for c in cases], f"{json_path}: 'training' images")
    ending = full_suffix(cases[0].images[0]) if cases else ".nii.gz"
    return DatasetInfo(root=root, name=str(meta.get("name", root.name)), labels=labels,
                       file_ending=ending, cases=sorted(cases, key=lambda c: c.id),
                       channel_names=channels)


def _files_with_ending(folder: Path, ending: str) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"Dataset folder {folder} does not exist.")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(ending) and not p.name.startswith("."))


def _label_file(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"Label file {path} does not exist; every training case needs one.")
    return path


def _check_orphan_labels(folder: Path, ending: str, case_ids: set[str]) -> None:
    for path in _files_with_ending(folder, ending):
        if path.name[: -len(ending)] not in case_ids:
            raise InputError(f"Label file {path} has no image in imagesTr. Add the image or "
                             "remove the label.")


def _read_id_list(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # Notepad's byte-order mark too
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"Cannot read the labelled-case list {path}: {err}.") from err
    ids = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise InputError(f"The labelled-case list {path} holds no case ids.")
    check_distinct_ids(ids, f"The labelled-case list {path}")
    return ids
