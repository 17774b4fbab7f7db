"""Case ids from file names: one rule for every command (segment, evaluate, adapt, datasets).

A case id is the file name without its image suffix, and only a known one: 'p.01.nii.gz' is
case 'p.01' (not 'p'), 'ct.seg.nrrd' is 'ct', a DICOM series folder is its folder name.
nnU-Net channel files 'case_0000.nii.gz', 'case_0001.nii.gz' belong to case 'case'. Two inputs
that would get the same id (and so the same output name) are refused, never merged or
overwritten.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from arcoseg.errors import InputError

# Longest first: '.seg.nrrd' before '.nrrd', '.nii.gz' before '.gz'-less names. 2D formats
# too: a single PNG is read (and nnU-Net's 2D datasets are PNG), and 'gray.png' is case 'gray'
# (its result was gray.png.nii.gz).
IMAGE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".png",
                  ".tiff", ".tif", ".jpeg", ".jpg", ".bmp")
FIRST_CHANNEL = "_0000"
_CHANNEL = re.compile(r"^(.+)_(\d{4})$")


def image_stem(path: str | os.PathLike) -> str:
    """The name of an image file without its known image suffix (case-insensitive); a folder
    (DICOM series) or a file without such a suffix keeps its whole name."""
    name = Path(path).name
    if not os.path.isdir(path):
        lower = name.lower()
        for suffix in IMAGE_SUFFIXES:
            if lower.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
    return name


def case_id(path: str | os.PathLike) -> str:
    """Case id of an image or label file: `image_stem` without nnU-Net's first-channel
    suffix '_0000'."""
    return image_stem(path).removesuffix(FIRST_CHANNEL)


def unique_case_ids(paths: Sequence[Path], what: str = "Inputs") -> dict[str, Path]:
    """{case id: path}; InputError naming both files when two paths share a case id."""
    cases: dict[str, Path] = {}
    for path in paths:
        cid = case_id(path)
        if cid in cases:
            raise InputError(f"{what} {cases[cid]} and {path} are both case '{cid}' (a case "
                             "is named by its file name without the image suffix): their "
                             "results would get one name, or one would be taken for the other. "
                             "Keep one file per case, rename one, or run them separately.")
        cases[cid] = path
    return cases


def group_channels(paths: Sequence[Path], channels: int) -> list[tuple[str, list[Path]]]:
    """(case id, channel files in channel order) for single- or multi-channel inputs.

    One channel: every path is its own case (`case_id`). Several: files named
    '<case>_0000…', '<case>_0001…' in the same folder form one case. InputError for a case
    whose channels are incomplete, and for two cases with the same id (in different folders).
    """
    if channels == 1:
        return [(cid, [path]) for cid, path in unique_case_ids(paths).items()]
    groups: dict[tuple[Path, str], dict[int, Path]] = {}
    for path in paths:
        match = _CHANNEL.match(image_stem(path))
        if match is None:
            raise InputError(f"{path} is not named like a channel file: a {channels}-channel "
                             f"model needs <case>_0000, <case>_0001, … files.")
        groups.setdefault((path.parent, match[1]), {})[int(match[2])] = path
    cases: dict[str, list[Path]] = {}
    for (folder, cid), found in groups.items():
        if sorted(found) != list(range(channels)):
            raise InputError(f"Case {cid} in {folder} has channel file(s) "
                             f"{[f'{cid}_{c:04d}' for c in sorted(found)]} but the model needs "
                             f"exactly {channels}: {cid}_0000 … {cid}_{channels - 1:04d}.")
        if cid in cases:
            raise InputError(f"Inputs {cases[cid][0]} and {found[0]} are both case '{cid}': "
                             "their results would get the same name. Rename one of them, or "
                             "run them separately.")
        cases[cid] = [found[c] for c in range(channels)]
    return list(cases.items())
