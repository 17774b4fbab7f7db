"""A DICOM series folder for tests: one file per slice, with the tags GDCM sorts by."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import SimpleITK as sitk


def write_dicom_series(folder: Path, volume: sitk.Image, series_uid: str,
                       positions: Sequence[Sequence[float]] | None = None) -> list[Path]:
    """Write `volume`'s slices (its k axis) as `folder`/slice000.dcm …; Image Position Patient
    is each slice's first voxel (mm), or `positions[k]` when given (a gap, a tilt). Returns the
    files in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = volume.GetDirection()
    files = []
    for z in range(volume.GetDepth()):
        sl = volume[:, :, z]
        position = (positions[z] if positions is not None
                    else volume.TransformIndexToPhysicalPoint((0, 0, z)))
        tags = {"0008|0060": "CT", "0020|000e": series_uid, "0020|0013": str(z + 1),
                "0020|0032": "\\".join(f"{p:.4f}" for p in position),
                "0020|0037": "\\".join(f"{d:.6f}" for d in direction[0:7:3] + direction[1:8:3]),
                "0018|0050": str(volume.GetSpacing()[2]),
                "0008|0018": f"{series_uid}.{z + 1}"}
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        files.append(folder / f"slice{z:03d}.dcm")
        writer.SetFileName(str(files[-1]))
        writer.Execute(sl)
    return files
