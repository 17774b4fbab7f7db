"""Reading errors name the real cause and a remedy (issue 17 item 20): an empty folder is not
"no DICOM series", an unreadable file is not "corrupt or truncated"."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from arcoseg.cli import main
from arcoseg.errors import InputError
from arcoseg.io import image_files
from arcoseg.io.images import read_image


def test_an_empty_folder_is_called_empty(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    with pytest.raises(InputError, match=rf"Folder {folder} is empty\. Give an image file "
                                         r"\(\.nii\.gz.*or a folder holding one DICOM series"):
        read_image(folder)


def test_a_folder_of_other_files_lists_them_and_points_at_subfolders(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "study").mkdir()
    with pytest.raises(InputError) as err:
        read_image(tmp_path)
    message = str(err.value)
    assert "holds no image file" in message and "no DICOM series" in message
    assert "2 entries: readme.txt, study" in message
    assert f"subfolders are not searched, so give one of them (e.g. {tmp_path / 'study'})" \
        in message


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
def test_an_unreadable_file_is_reported_as_a_permission_problem(tmp_path, monkeypatch, suffix):
    """Simulated: the tests may run as root, who can read a chmod 000 file."""
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32)), str(path))
    real_open = builtins.open

    def denied(file, *args, **kwargs):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(image_files, "open", denied, raising=False)
    with pytest.raises(InputError, match=rf"Cannot read {path}: permission denied\. Ask its "
                                         r"owner.*chmod a\+r") as err:
        read_image(path)
    assert "corrupt" not in str(err.value)


def test_segment_on_an_empty_folder_says_so(tmp_path, capsys):
    from arcoseg.data.plan import Plan
    from arcoseg.model_metadata import ModelMetadata, make_classes
    from arcoseg.modelfile import save_model
    from arcoseg.networks import NetworkConfig, build_model

    config = NetworkConfig(arch="unet2d", in_channels=1, num_classes=2, features=(4, 8, 16, 32, 64))
    plan = Plan(dims=2, target_spacing=(1.0, 1.0, 1.0), normalization="zscore",
                label_values=[0, 1], patch_size=(16, 16))
    save_model(tmp_path / "model", build_model(config),
               ModelMetadata(network=config, classes=make_classes(["background", "organ"]),
                             plan=plan.to_dict()))
    empty = tmp_path / "in"
    empty.mkdir()
    code = main(["segment", str(tmp_path / "model"), str(empty), "-o", str(tmp_path / "out"),
                 "--device", "cpu", "--progress", "none"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"Folder {empty} is empty" in err and "DICOM series" in err
