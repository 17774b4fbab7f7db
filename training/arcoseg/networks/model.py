"""Network configuration (stored in model.json), the model wrapper and the builder."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from arcoseg.constants import INPUT_DIVISOR
from arcoseg.errors import ModelFileError
from arcoseg.networks.head import RepresentationHead
from arcoseg.networks.unet2d import DEFAULT_FEATURES, UNet2D
from arcoseg.networks.vnet3d import VNet3D

ARCHS = ("unet2d", "vnet3d")
SPATIAL_DIMS = {"unet2d": 2, "vnet3d": 3}
# Embedding width when a head is wanted (the paper uses 512; the reference code 496 / 16).
DEFAULT_HEAD_DIM = {"unet2d": 64, "vnet3d": 32}
# Embedding grid of a new head of `arcoseg train`, as 1/stride of the input: 1/4 in 2D, the
# resolution ReCo's representation has (its DeepLabv3+ decoder; Liu et al., ICLR 2022), which
# makes ARCO's 2D training step 1.29x mean teacher's on the CPU instead of 1.41x at 1/2, with
# the same validation Dice within seed noise (benchmarks/RESULTS.md, issue 16); 1/2 in 3D, whose
# patches are already coarse. Adapt keeps 1/2 (adapt.training). A model file keeps the stride
# it was trained with (2 for every model made before this rule).
DEFAULT_HEAD_STRIDE = {"unet2d": 4, "vnet3d": 2}
# The one width setting each architecture has; the other one is not written to model.json.
_WIDTH_FIELD = {"unet2d": "features", "vnet3d": "base_filters"}
_HEAD_STRIDES = (1, 2, 4, 8, 16)
# Settings a stored configuration must state (the others have safe defaults).
_REQUIRED = ("arch", "in_channels", "num_classes")
# Channel counts (widths, inputs, head) above this are an edited file, not a network that fits
# in memory: refused when read (a 10**12 width overflowed torch's storage size, exit 1).
MAX_CHANNELS = 4096
MAX_CLASSES = 255  # label maps are uint8 and 255 marks unannotated voxels


@dataclass
class NetworkConfig:
    """What `build_model` needs to rebuild a network; validated on construction."""

    arch: str
    in_channels: int = 1
    num_classes: int = 2
    features: tuple[int, ...] = DEFAULT_FEATURES
    base_filters: int = 16
    head_dim: int | None = None
    head_stride: int = 2

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ModelFileError(f"Unknown network architecture {self.arch!r}; expected one of "
                                 f"{', '.join(ARCHS)}. The model may need a newer ARCOSegment.")
        if isinstance(self.features, (list, tuple)):
            self.features = tuple(self.features)
        _check_int("in_channels", self.in_channels, 1)
        _check_int("num_classes", self.num_classes, 2, MAX_CLASSES)
        _check_int("base_filters", self.base_filters, 1)
        if (not isinstance(self.features, tuple) or len(self.features) != 5
                or not all(is_integer(f) and 1 <= f <= MAX_CHANNELS for f in self.features)):
            raise ModelFileError(f"Network setting 'features' must be 5 integers from 1 to "
                                 f"{MAX_CHANNELS}, got {self.features!r}.")
        if self.head_dim is not None:
            _check_int("head_dim", self.head_dim, 1)
        if self.head_stride not in _HEAD_STRIDES or not is_integer(self.head_stride):
            raise ModelFileError(f"Network setting 'head_stride' must be one of {_HEAD_STRIDES}, "
                                 f"got {self.head_stride!r}.")

    @property
    def spatial_dims(self) -> int:
        """2 for 2D (slice) networks, 3 for 3D networks."""
        return SPATIAL_DIMS[self.arch]

    @property
    def input_divisor(self) -> int:
        """Every spatial input size must be a multiple of this (four 2x downsamplings)."""
        return INPUT_DIVISOR

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; only the width setting of this architecture is included."""
        skip = set(_WIDTH_FIELD.values()) - {_WIDTH_FIELD[self.arch]}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in skip}
        if "features" in out:
            out["features"] = list(self.features)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Inverse of `to_dict`; ModelFileError for unknown architectures or bad fields."""
        if not isinstance(data, Mapping):
            raise ModelFileError(f"Network configuration must be a JSON object, got {data!r}.")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ModelFileError(f"Network configuration lacks {missing}.")
        arch = data["arch"]
        names = {f.name for f in dataclasses.fields(cls)}
        if arch in _WIDTH_FIELD:
            names -= set(_WIDTH_FIELD.values()) - {_WIDTH_FIELD[arch]}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ModelFileError(f"Network configuration for {arch!r} has unknown settings "
                                 f"{unknown}; known: {sorted(names)}.")
        return cls(**data)


def is_integer(value: Any) -> bool:
    """True for Python and numpy integers, False for bools (which are ints in Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int, maximum: int = MAX_CHANNELS) -> None:
    if not is_integer(value) or not minimum <= value <= maximum:
        raise ModelFileError(f"Network setting {name!r} must be an integer from {minimum} to "
                             f"{maximum}, got {value!r}.")


class SegmentationModel(nn.Module):
    """A segmentation backbone plus an optional representation head."""

    def __init__(self, backbone: nn.Module, head: RepresentationHead | None = None,
                 config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, *spatial)."""
        return self.backbone(x)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and embeddings (B, D, *spatial/stride), or None without a head."""
        if self.head is None:
            return self.backbone(x), None
        logits, features = self.backbone.forward_features(x)
        return logits, self.head(features)


def build_model(config: NetworkConfig) -> SegmentationModel:
    """The network `config` describes, freshly initialised."""
    if config.arch == "unet2d":
        backbone: nn.Module = UNet2D(config.in_channels, config.num_classes, config.features)
    else:
        backbone = VNet3D(config.in_channels, config.num_classes, config.base_filters)
    head = None
    if config.head_dim is not None:
        head = RepresentationHead(backbone.feature_channels, config.head_dim,
                                  config.spatial_dims, config.head_stride)
    return SegmentationModel(backbone, head, config)


def with_default_head(config: NetworkConfig, stride: int | None = None) -> NetworkConfig:
    """`config` with a representation head: its own if it has one (dimension and stride kept,
    so a parent's head is reused as trained), else the default dimension of its architecture
    at `stride` (None: DEFAULT_HEAD_STRIDE)."""
    if config.head_dim is not None:
        return config
    return dataclasses.replace(config, head_dim=DEFAULT_HEAD_DIM[config.arch],
                               head_stride=stride or DEFAULT_HEAD_STRIDE[config.arch])


def load_backbone_weights(model: SegmentationModel, state: dict[str, torch.Tensor]) -> None:
    """Load a parent's weights; only the representation head may be missing (it starts fresh).

    A parent trained without ARCO has no head; a child that adds one keeps every other weight.
    """
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("head.")]
    if missing or result.unexpected_keys:
        raise ModelFileError("The parent model's weights do not fit the network: "
                             f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}.")
