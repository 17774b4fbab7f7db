"""The module's pipeline against the real engine (`python -m arcoseg`, CPU), without Slicer:
a stand-in volume node → engine files → `segment` → the label map back on the volume's grid as
segment indices; and the model registry as the panel lists it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ARCOSegmentLib import conversions as cv
from ARCOSegmentLib import scene
from ARCOSegmentLib.engine import EngineJob, parse_segment_result, segment_args
from ARCOSegmentLib.models import format_entry, is_model_folder, models_args, parse_models_list
from ARCOSegmentLib.process import engine_command, engine_environment
from ARCOSegmentLib.segments import labels_to_indices, read_model_classes
from standins import OBLIQUE, StandInROINode, StandInVolumeNode

CLASSES = ["background", "Left kidney", "Liver"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained 2D model whose classes have non-contiguous label values (0, 3, 7)."""
    from arcoseg.data.preprocess import Plan
    from arcoseg.modelfile import ModelMetadata, make_classes, save_model
    from arcoseg.networks import NetworkConfig, build_model
    config = NetworkConfig(arch="unet2d", in_channels=1, num_classes=3, features=(4, 8, 16, 32, 64))
    torch.manual_seed(0)
    plan = Plan(dims=2, target_spacing=(2.5, 0.6, 0.8), normalization="zscore",
                label_values=[0, 3, 7], patch_size=(32, 32))
    metadata = ModelMetadata(network=config, classes=make_classes(CLASSES, values=[0, 3, 7]),
                             plan=plan.to_dict())
    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_model(folder, build_model(config).eval(), metadata)
    return folder


def run(args, env):
    return EngineJob(engine_command(args, python=sys.executable), lambda r: r, env=env).wait(120)


def test_segment_through_the_real_engine_lands_on_the_volume_grid(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    array = rng.normal(100, 30, size=(6, 20, 24)).astype(np.int16)
    node = StandInVolumeNode(array, OBLIQUE)
    work = tmp_path / "work"
    exported = scene.export_volume(node, work / "image.nii.gz",
                                   scene.roi_ras_bounds(StandInROINode([2, 9, -18.5, -5, 29, 40])))
    classes = read_model_classes(tiny_model)

    def finish(result):
        out = parse_segment_result(result)
        indices = labels_to_indices(exported.to_full(*cv.read_labelmap(out.labels)), classes)
        entropy, _ = cv.read_volume(out.entropy)
        return out, indices, entropy

    progress = []
    command = engine_command(segment_args(tiny_model, exported.path, work / "labels.nii.gz",
                                          entropy=True, cpu_only=True), python=sys.executable)
    out, indices, entropy = EngineJob(command, finish, env=engine_environment(cpu_only=True),
                                      work_dir=work, progress=progress.append).wait(timeout=120)
    assert out.classes == CLASSES and out.device == "cpu"
    assert indices.shape == array.shape and set(np.unique(indices)) <= {0, 1, 2}
    outside = np.ones(array.shape, bool)
    outside[exported.box] = False
    assert outside.any() and (indices[outside] == 0).all()
    assert entropy.shape == exported.written_shape and 0 <= entropy.min() <= entropy.max() <= 1
    assert progress[-1]["step"] == progress[-1]["total"] == 1
    assert not work.exists()  # the job cleans its work folder


def test_registry_lists_an_imported_model_with_its_folder(tiny_model, tmp_path):
    env = engine_environment({"ARCOSEG_HOME": str(tmp_path / "home")}, cpu_only=True)
    imported = run(models_args("import", tiny_model), env)
    assert imported["imported"] == "tiny@v1"
    entries = parse_models_list(run(models_args("list"), env))
    assert [e.ref for e in entries] == ["tiny@v1"] and entries[0].active
    assert is_model_folder(entries[0].path)
    assert [c.name for c in read_model_classes(entries[0].path)] == CLASSES[1:]
    assert format_entry(entries[0]).startswith("★ tiny v1 · base · ")
