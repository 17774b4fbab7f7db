"""The MNI152 (ICBM 2009a) brain template and its grey/white-matter maps, as shipped in the
nilearn wheel — real anatomy on every machine without a download. Only the data files are read;
nilearn itself is never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from arcoseg.errors import ArcosegError
from arcoseg.data.preprocess import resample

CLASSES = ["background", "grey_matter", "white_matter"]

NOTICE = """MNI ICBM152 non-linear symmetric 2009a template (via the nilearn package).
Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
Institute, McGill University. Permission to use, copy, modify, and distribute this software and
its documentation for any purpose and without fee is hereby granted, provided that the above
copyright notice appear in all copies. The authors and McGill University make no representations
about the suitability of this software for any purpose. It is provided "as is" without express
or implied warranty. References: Fonov et al., NeuroImage 2011; Fonov et al., NeuroImage 2009;
Collins et al., 1999."""


def template_folder() -> Path:
    """nilearn's bundled data folder, found without importing nilearn."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ArcosegError("The brain demo needs the MNI152 template shipped with nilearn: "
                           "pip install 'arcoseg[demo]' (or run `make demo`), or use "
                           "`arcoseg demo --source phantom`.")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def load_brain(spacing_mm: float = 2.0) -> tuple[sitk.Image, sitk.Image]:
    """T1 image and a label map (0 background, 1 grey matter, 2 white matter) at `spacing_mm`.

    Labels: the tissue with the larger probability wherever it exceeds 0.5.
    """
    folder = template_folder()
    read = lambda kind: sitk.ReadImage(  # noqa: E731
        str(folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"), sitk.sitkFloat32)
    t1, gm, wm = (resample(read(k), (spacing_mm,) * 3) for k in ("t1", "gm", "wm"))
    g, w = sitk.GetArrayFromImage(gm) / 255.0, sitk.GetArrayFromImage(wm) / 255.0
    labels = np.where((g > 0.5) & (g >= w), 1, np.where(w > 0.5, 2, 0)).astype(np.uint8)
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(t1)
    return t1, label_image
