"""Model classes ↔ Slicer segments: names, colours, stable segment IDs, label values. No Slicer.

A model's classes come from its model.json ("classes": [{"name", "value", "color": [r, g, b]}],
background first). Result label maps hold the class *values*; Slicer imports label values 1..N into
N segments, so values are mapped to indices in class order. Re-running a model updates the segments
named after its classes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ARCOSegmentLib.models import MODEL_FILE

SEGMENT_ID_PREFIX = "ARCOSegment_"


@dataclass(frozen=True)
class ClassInfo:
    """A foreground class: its name, label value in result files and colour (RGB in 0..1)."""

    name: str
    value: int
    color: tuple[float, float, float]


@dataclass(frozen=True)
class SegmentSpec:
    """Where a class goes in a segmentation node."""

    segment_id: str
    name: str
    color: tuple[float, float, float]
    exists: bool


def read_model_classes(model_dir: str | Path) -> list[ClassInfo]:
    """The foreground classes of a model folder, in class order; ValueError if unreadable."""
    path = Path(model_dir) / MODEL_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["classes"]
        classes = [ClassInfo(str(c["name"]), int(c["value"]),
                             tuple(float(v) / 255.0 for v in c["color"][:3]))
                   for c in entries]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"Cannot read the classes of the model in {model_dir} ({path.name}: "
                         f"{err}). Choose a valid ARCOSegment model folder.") from err
    return [c for c in classes if c.value != 0]


def segment_id_for(name: str) -> str:
    """The segment ID a new class segment starts from, e.g. 'Left kidney' →
    'ARCOSegment_Left_kidney' (not unique: 'Left-kidney' gives it too; `plan_segments` adds a
    number where it is taken)."""
    return SEGMENT_ID_PREFIX + (re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "class")


def plan_segments(classes: Sequence[ClassInfo], existing: Mapping[str, str]) -> list[SegmentSpec]:
    """One segment per class, each with its own ID: the segment named after the class (ignoring
    case and outer spaces), else a new one.

    `existing` maps segment IDs to names of the segmentation that will receive the result. A
    segment the user renamed (e.g. 'Liver (first run)') is never reused, so it is kept; new
    segments take IDs no segment has ('ARCOSegment_Liver_2' where 'ARCOSegment_Liver' is taken).
    """
    by_name = {name.strip().lower(): sid for sid, name in existing.items()}
    taken = set(existing)
    specs: list[SegmentSpec] = []
    for cls in classes:
        sid = by_name.get(cls.name.strip().lower())
        if sid is None or any(spec.segment_id == sid for spec in specs):
            sid = _free_id(segment_id_for(cls.name), taken)
        taken.add(sid)
        specs.append(SegmentSpec(sid, cls.name, cls.color, sid in existing))
    return specs


def _free_id(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, … : the first that is not in `taken`."""
    sid, number = base, 1
    while sid in taken:
        number += 1
        sid = f"{base}_{number}"
    return sid


def labels_to_indices(labels: np.ndarray, classes: Sequence[ClassInfo]) -> np.ndarray:
    """Class values → 1..N in class order (0 elsewhere), the order Slicer imports segments in."""
    lookup = np.zeros(max([int(labels.max(initial=0)), *(c.value for c in classes)]) + 1, np.uint8)
    for index, cls in enumerate(classes, start=1):
        lookup[cls.value] = index
    return lookup[labels]


def indices_to_values(indices: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Segment indices 1..N (0 = none) → label values[n - 1]; uint8, or uint16 above 255."""
    dtype = np.uint8 if max(values, default=0) <= 255 else np.uint16
    lookup = np.array([0, *values], dtype)
    if indices.size and int(indices.max()) >= len(lookup):
        raise ValueError(f"Label map holds segment index {int(indices.max())}, but only "
                         f"{len(values)} segment(s) were exported.")
    return lookup[indices]


def segment_values(classes: Sequence[ClassInfo],
                   existing: Mapping[str, str]) -> list[tuple[str, int]]:
    """(segment ID, class value) of each class that has a segment in `existing` (ID → name)."""
    return [(spec.segment_id, cls.value)
            for spec, cls in zip(plan_segments(classes, existing), classes) if spec.exists]


def match_annotation_segments(segments: Mapping[str, str],
                              class_names: Sequence[str]) -> list[tuple[str, int]]:
    """(segment ID, class index 1..n) for each annotation segment, matched by name.

    ValueError (readable) if a segment matches no class or none matches at all.
    """
    index_of = {name.strip().lower(): i for i, name in enumerate(class_names, start=1)}
    matched, unknown = [], []
    for sid, name in segments.items():
        index = index_of.get(name.strip().lower())
        if index is None:
            unknown.append(name)
        else:
            matched.append((sid, index))
    expected = ", ".join(class_names)
    if unknown:
        raise ValueError(f"Annotation segment(s) {', '.join(repr(n) for n in unknown)} match no "
                         f"class of the model ({expected}). Rename them to a class name, or "
                         "adapt from scratch to train on new classes.")
    if not matched:
        raise ValueError(f"The annotation segmentation has no segment named after a class of the "
                         f"model ({expected}). Draw segments with these names.")
    return matched
