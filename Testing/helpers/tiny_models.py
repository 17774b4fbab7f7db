"""Tiny model folders for tests: a 2D U-Net (features 4…64) saved as model.json +
model.safetensors, fast to build, with a plan that `segment` accepts (1 mm, z-score, 32² patch)."""

from __future__ import annotations

from pathlib import Path

import torch

from arcoseg.data.plan import Plan
from arcoseg.model_metadata import ModelMetadata, make_classes
from arcoseg.modelfile import save_model
from arcoseg.networks import NetworkConfig, build_model

CONFIG = NetworkConfig(arch="unet2d", in_channels=1, num_classes=2, features=(4, 8, 16, 32, 64))


def tiny_config(classes: int = 2, head_dim: int | None = None,
                in_channels: int = 1) -> NetworkConfig:
    """`CONFIG` with `classes` output channels, `in_channels` input channels and an optional
    representation head."""
    return NetworkConfig(**{**CONFIG.to_dict(), "num_classes": classes, "head_dim": head_dim,
                            "in_channels": in_channels})


def tiny_plan(classes: int = 2) -> Plan:
    """A 2D plan: 1 mm target spacing, z-score, label values 0…classes-1, 32 × 32 patches."""
    return Plan(dims=2, target_spacing=(1.0, 1.0, 1.0), normalization="zscore",
                label_values=list(range(classes)), patch_size=(32, 32))


def save_tiny(folder: Path, seed: int = 0, classes: tuple[str, ...] = ("background", "organ"),
              provenance: dict | None = None, head_dim: int | None = None,
              in_channels: int = 1) -> Path:
    """Save an untrained tiny model into `folder` and return it; `seed` changes its weights.

    Its labels are meaningless; its geometry, classes and files are not."""
    torch.manual_seed(seed)
    config = tiny_config(len(classes), head_dim, in_channels)
    metadata = ModelMetadata(network=config, classes=make_classes(list(classes)),
                             plan=tiny_plan(len(classes)).to_dict(),
                             provenance=provenance or {"method": "supervised"})
    save_model(folder, build_model(config).eval(), metadata)
    return folder
