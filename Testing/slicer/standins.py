"""Stand-ins for the Slicer nodes the scene glue reads, built from real vtk objects."""

from __future__ import annotations

import numpy as np
import vtk

from ARCOSegmentLib import conversions as cv


class StandInVolumeNode:
    """The methods of vtkMRMLScalarVolumeNode that the export uses: voxels in a vtkImageData
    with unit spacing and zero origin, geometry in an IJK-to-RAS vtkMatrix4x4."""

    def __init__(self, array: np.ndarray, ijk_to_ras: np.ndarray, name: str = "CT") -> None:
        self._image = cv.image_data_from_array(array)
        self._matrix = cv.numpy_to_vtk_matrix(ijk_to_ras)
        self._name = name

    def GetImageData(self):
        return self._image

    def GetIJKToRASMatrix(self, matrix: vtk.vtkMatrix4x4) -> None:
        matrix.DeepCopy(self._matrix)

    def GetName(self) -> str:
        return self._name


class StandInROINode:
    """vtkMRMLMarkupsROINode.GetRASBounds."""

    def __init__(self, bounds) -> None:
        self._bounds = list(bounds)

    def GetRASBounds(self, bounds) -> None:
        bounds[:] = self._bounds


# I → A (0.8 mm), J → -R (0.6 mm), K → -S (2.5 mm): oblique to the file axes, anisotropic
OBLIQUE = np.array([[0.0, -0.6, 0.0, 10.0],
                    [0.8, 0.0, 0.0, -20.0],
                    [0.0, 0.0, -2.5, 40.0],
                    [0.0, 0.0, 0.0, 1.0]])
