"""Issue 17 item 1 in the Slicer module: a gantry-tilted (sheared) volume keeps its grid on the
way to the engine and back; a format that would move it is refused, never written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib.scene import ExportedVolume

TILT = np.radians(15)
# IJK-to-RAS of a 15° gantry tilt: slices (K) step along S and shift along A.
SHEARED = np.array([[0.8, 0.0, 0.0, 10.0],
                    [0.0, 0.8, -2.0 * np.sin(TILT), -20.0],
                    [0.0, 0.0, 2.0 * np.cos(TILT), 30.0],
                    [0.0, 0.0, 0.0, 1.0]])


def test_a_sheared_volume_round_trips_through_nrrd(tmp_path):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    back, matrix = cv.read_volume(cv.write_volume(array, SHEARED, tmp_path / "image.nrrd"))
    assert (back == array).all()
    assert cv.voxel_offset(SHEARED, matrix, array.shape) < 1e-3


def test_a_sheared_volume_is_not_written_as_nifti(tmp_path):
    with pytest.raises(ValueError, match="write it as .nrrd"):
        cv.write_volume(np.zeros((4, 5, 6), np.uint8), SHEARED, tmp_path / "image.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_engine_output_shifted_by_a_fraction_of_a_voxel_is_refused():
    """0.2 mm voxels far from the origin: a 0.15 mm (0.75 voxel) shift was within the old
    millimetre tolerance."""
    geometry = np.diag([0.2, 0.2, 0.2, 1.0])
    geometry[:3, 3] = [0.0, 0.0, -1500.0]
    exported = ExportedVolume(Path("image.nrrd"), (4, 5, 6), geometry)
    shifted = geometry.copy()
    shifted[2, 3] += 0.15
    labels = np.zeros((4, 5, 6), np.uint8)
    assert (exported.to_full(labels, geometry) == labels).all()
    with pytest.raises(ValueError, match="does not have the geometry"):
        exported.to_full(labels, shifted)
