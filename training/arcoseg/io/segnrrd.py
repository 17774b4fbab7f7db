"""Slicer segmentation files (.seg.nrrd) ↔ label maps, through `slicerio` (kept by Slicer's
developers) for the file format.

A .seg.nrrd is a NRRD holding one or more layers of labels (4D with a leading layer axis when
segments overlap) plus, per segment, its name, colour, label value, layer and extent; Slicer
crops it to the segments' extent, with `Segmentation_ReferenceImageExtentOffset` the crop's index
in the grid it was drawn on and the "Reference image geometry" conversion parameter that grid.

What slicerio does not do, and this module does: put the cropped voxels back on an image's grid
(it returns the file's own, cropped grid); match segments to a model's classes; detect overlapping
segments (it reads layers; flattening them silently lets the later segment win); write atomically
and check what it wrote. Arrays here are (z, y, x) like everywhere in the engine; slicerio's are
(i, j, k) = (x, y, z), with an extra leading layer axis for several layers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from arcoseg.errors import InputError, OutputError
from arcoseg.fileutil import atomic_path

SUFFIX = ".seg.nrrd"
_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_AUTO_NAME = re.compile(r"(segment|label)?[ _]*\d+", re.IGNORECASE)
_GRID_TOLERANCE = 1e-3  # in voxels: positions, and spacing/direction relative to the spacing


@dataclass(frozen=True)
class ClassSpec:
    """A foreground class a segment can be matched to: its name and label value."""

    name: str
    value: int


def is_seg_nrrd(path: str | os.PathLike) -> bool:
    """True for a Slicer segmentation file name (*.seg.nrrd)."""
    return Path(path).name.lower().endswith(SUFFIX)


def read_segmentation(path: str | os.PathLike, classes: Sequence[ClassSpec],
                      reference: sitk.Image | None = None) -> sitk.Image:
    """The segments of a .seg.nrrd as a uint8 label map of class positions on a grid.

    Voxel = n (1-based position of its class in `classes`), 0 = no segment. A segment is matched
    to a class by name (case-insensitive), else, when Slicer generated its name ('Segment_3',
    '3'), by its label value. The grid is `reference`'s (an image the segments were drawn on),
    else the file's reference image geometry, else the file's own grid.

    Raises InputError (naming the file, the cause and what to do) for an unreadable file,
    a segment matching no class, two segments matching one class (e.g. two named 'LV': which
    one is the class is a guess), segments of different classes overlapping, voxels holding a
    value no segment describes (drawn, but of no class), and segments
    drawn on another grid than `reference` or reaching outside it.
    """
    segmentation = _read(path)
    layers = _layers_zyx(segmentation)
    positions = np.zeros(layers.shape[1:], np.uint8)
    matched: dict[int, dict[str, Any]] = {}  # class position -> the one segment it comes from
    for segment in segmentation.get("segments", []):
        position = _match(segment, classes, path)
        _check_one_segment_per_class(segment, position, classes, matched, path)
        mask = layers[segment.get("layer", 0)] == segment.get("labelValue", 1)
        _check_overlap(mask, positions, segment, matched, path)
        positions[mask] = position
        matched[position] = segment
    _check_described(layers, segmentation.get("segments", []), path)
    file_ijk_to_lps = np.asarray(segmentation["ijkToLPS"], float)
    target = reference if reference is not None else _reference_grid(segmentation, positions)
    return _on_grid(positions, file_ijk_to_lps, target, path, reference is not None)


def write_segmentation(labels: sitk.Image, classes: Sequence[dict[str, Any]],
                       path: str | os.PathLike) -> None:
    """Write a label map (class values) as a .seg.nrrd Slicer loads as a segmentation: one segment
    per foreground class of `classes` (model.json entries: name, value, color 0-255), named and
    coloured after it, with the label map's geometry; written atomically and read back.

    Raises OutputError if the file cannot be written or does not read back with its geometry."""
    import slicerio
    array = sitk.GetArrayFromImage(labels)
    segments = [_segment_entry(c, array) for c in classes if int(c["value"]) != 0]
    segmentation = {"voxels": np.ascontiguousarray(array.transpose(2, 1, 0)),
                    "ijkToLPS": image_ijk_to_lps(labels), "segments": segments,
                    "containedRepresentationNames": ["Binary labelmap"]}
    with atomic_path(path) as tmp:
        try:
            slicerio.write_segmentation(str(tmp), segmentation)
            written = slicerio.read_segmentation(str(tmp), skip_voxels=True)
        except (OSError, ValueError) as err:
            raise OutputError(f"Could not write {path}: {err}. Check the free disk space and "
                              "permissions.") from err
        if not np.allclose(written["ijkToLPS"], segmentation["ijkToLPS"], atol=1e-6):
            raise OutputError(f"{path} did not keep the image geometry when written; write a "
                              ".nrrd label map instead.")


def check_segment_names(names: Sequence[str], path: str | os.PathLike) -> None:
    """OutputError unless every class name can be a segment name in the .seg.nrrd `path`: the
    NRRD header that holds them is ASCII (pynrrd, which slicerio writes with, refuses anything
    else, and reads other bytes by dropping them), so checked before any work."""
    for name in names:
        if not name.isascii():
            raise OutputError(
                f"Class '{name}' cannot be a segment name in {path}: a .seg.nrrd header holds "
                "ASCII characters only. Write a label map (.nii.gz or .nrrd) and load it in "
                "Slicer as a segmentation, or use ASCII class names.")


def image_ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """The 4×4 (i, j, k) → LPS matrix of a 3D SimpleITK image."""
    matrix = np.eye(4)
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    matrix[:3, :3] = direction * np.asarray(image.GetSpacing(), float)
    matrix[:3, 3] = image.GetOrigin()
    return matrix


# -- reading ---------------------------------------------------------------------------------


def _read(path: str | os.PathLike) -> dict[str, Any]:
    import slicerio
    try:
        segmentation = slicerio.read_segmentation(str(path))
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"Cannot read the Slicer segmentation {path}: {err}. Save it again from "
                         "Slicer (Data module → right-click → Export to file… → .seg.nrrd).") from err
    if segmentation.get("voxels") is None or np.asarray(segmentation["voxels"]).ndim not in (3, 4):
        raise InputError(f"{path} holds no 3D segmentation voxels. Save it again from Slicer.")
    return segmentation


def _layers_zyx(segmentation: dict[str, Any]) -> np.ndarray:
    """The voxels as (layer, z, y, x)."""
    voxels = np.asarray(segmentation["voxels"])
    layers = voxels if voxels.ndim == 4 else voxels[np.newaxis]
    return layers.transpose(0, 3, 2, 1)


def _match(segment: dict[str, Any], classes: Sequence[ClassSpec], path) -> int:
    """The 1-based position of the class a segment belongs to (see `read_segmentation`)."""
    name = str(segment.get("name", segment.get("id", ""))).strip()
    by_name = {c.name.strip().lower(): n for n, c in enumerate(classes, start=1)}
    if name.lower() in by_name:
        return by_name[name.lower()]
    auto = segment.get("nameAutoGenerated") or _AUTO_NAME.fullmatch(name)
    by_value = {c.value: n for n, c in enumerate(classes, start=1)}
    if auto and segment.get("labelValue") in by_value:
        return by_value[segment["labelValue"]]
    expected = ", ".join(f"{c.name} (value {c.value})" for c in classes)
    raise InputError(f"Segment '{name}' of {path} matches none of the classes ({expected}). "
                     "Rename it in Slicer's Segment Editor to one of these class names or "
                     "remove it (for a model with new classes, adapt from scratch).")


def _segment_label(segment: dict[str, Any]) -> str:
    """How the user knows a segment: its name (and id when the name is not unique)."""
    return f"'{segment.get('name', '')}' (id {segment.get('id', '?')})"


def _check_one_segment_per_class(segment: dict[str, Any], position: int,
                                 classes: Sequence[ClassSpec], matched: dict[int, dict[str, Any]],
                                 path) -> None:
    """InputError when a segment already `matched` the class at `position` (1-based)."""
    if position in matched:
        raise InputError(
            f"Segments {_segment_label(matched[position])} and {_segment_label(segment)} of "
            f"{path} both match class '{classes[position - 1].name}'; one class comes from one "
            "segment. In Slicer's Segment Editor rename the one that is another structure, or "
            "merge them (Logical operators → Add), and save again.")


def _check_overlap(mask: np.ndarray, positions: np.ndarray, segment: dict[str, Any],
                   matched: dict[int, dict[str, Any]], path) -> None:
    """InputError when `segment`'s `mask` covers voxels another class's segment holds."""
    clash = mask & (positions != 0)
    if clash.any():
        other = matched[int(positions[clash][0])]
        raise InputError(
            f"Segments '{other.get('name', other.get('id', '?'))}' and "
            f"'{segment.get('name', segment.get('id'))}' of {path} "
            f"overlap in {int(clash.sum())} voxel(s) (Slicer keeps them in separate layers); a "
            "label map holds one class per voxel. In Slicer's Segment Editor remove the overlap "
            "(Logical operators → Subtract one segment from the other) and save again.")


def _check_described(layers: np.ndarray, segments: list[dict[str, Any]], path) -> None:
    """InputError for non-zero voxels whose (layer, value) no segment describes: reading them
    as background would train on unlabelled drawing as if it were background."""
    for layer in range(layers.shape[0]):
        described = {int(s.get("labelValue", 1)) for s in segments if s.get("layer", 0) == layer}
        stray = sorted(set(np.unique(layers[layer]).tolist()) - described - {0})
        if stray:
            raise InputError(
                f"{path} has voxels of value {stray[0]} in layer {layer} that no segment "
                "describes (the header lists none with that label value), so their class is "
                "unknown. Re-save the segmentation from Slicer, or export it as a label map.")


def _reference_grid(segmentation: dict[str, Any], positions: np.ndarray) -> sitk.Image:
    """An empty image on the grid the segments were drawn on (the file's own if not recorded)."""
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], float)
    size = positions.shape[::-1]
    for parameter in segmentation.get("conversionParameters", []):
        if parameter.get("name") == "Reference image geometry" and parameter.get("value"):
            numbers = [float(v) for v in parameter["value"].strip(";").split(";")]
            ijk_to_lps = _LPS_FROM_RAS @ np.asarray(numbers[:16]).reshape(4, 4)
            extent = numbers[16:22]
            offset = ijk_to_lps[:3, :3] @ extent[0::2]
            ijk_to_lps[:3, 3] += offset  # the grid starts at the extent's first voxel
            size = tuple(int(extent[2 * a + 1] - extent[2 * a] + 1) for a in range(3))
    image = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijk_to_lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(ijk_to_lps[:3, 3].tolist())
    return image


def _on_grid(positions: np.ndarray, file_ijk_to_lps: np.ndarray, target: sitk.Image,
             path, is_image: bool) -> sitk.Image:
    """The (cropped) file voxels placed at their index offset in `target`'s grid."""
    target_matrix = image_ijk_to_lps(target)
    spacing = np.linalg.norm(target_matrix[:3, :3], axis=0)
    offset = np.linalg.solve(target_matrix[:3, :3], file_ijk_to_lps[:3, 3] - target_matrix[:3, 3])
    same_axes = np.allclose(file_ijk_to_lps[:3, :3], target_matrix[:3, :3],
                            atol=_GRID_TOLERANCE * spacing.min())
    if not same_axes or not np.allclose(offset, np.round(offset), atol=_GRID_TOLERANCE):
        what = "the image it is used with" if is_image else "its reference geometry"
        raise InputError(f"{path} was not drawn on the voxel grid of {what} (spacing, direction "
                         "or voxel positions differ). In Slicer, select that volume as the "
                         "segmentation's source geometry (Segment Editor → Specify geometry) "
                         "and save again.")
    start = np.round(offset).astype(int)[::-1]  # (z, y, x)
    full = np.zeros(target.GetSize()[::-1], np.uint8)
    lo = np.maximum(start, 0)
    hi = np.minimum(start + positions.shape, full.shape)
    inside = tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))
    if np.count_nonzero(positions[inside]) != np.count_nonzero(positions):
        raise InputError(f"Segments of {path} reach outside the image grid. Draw them on this "
                         "image in Slicer (or crop them to it) and save again.")
    if np.all(hi > lo):
        full[tuple(slice(a, b) for a, b in zip(lo, hi))] = positions[inside]
    image = sitk.GetImageFromArray(full)
    image.CopyInformation(target)
    return image


# -- writing ---------------------------------------------------------------------------------


def _segment_entry(cls: dict[str, Any], array: np.ndarray) -> dict[str, Any]:
    """slicerio's description of one class's segment (its voxels hold the class value)."""
    value = int(cls["value"])
    where = np.nonzero(array == value)
    extent = ([int(v) for axis in where[::-1] for v in (axis.min(), axis.max())]
              if where[0].size else [0, -1, 0, -1, 0, -1])
    color = [round(float(v) / 255.0, 6) for v in cls.get("color", [128, 128, 128])[:3]]
    return {"id": str(cls["name"]), "name": str(cls["name"]), "labelValue": value, "layer": 0,
            "extent": extent, "color": color, "nameAutoGenerated": False,
            "colorAutoGenerated": False}
