"""Representation head for the contrastive loss: FPN-style fusion of decoder feature maps.

The embedding is computed at 1/`stride` of the input resolution, not at full resolution: a
full-resolution D-dim map for the whole batch is what makes the reference code need a 24 GB GPU.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

_INTERP_MODE = {2: "bilinear", 3: "trilinear"}


class RepresentationHead(nn.Module):
    """Fuse feature maps (ordered coarsest to finest, the last at input resolution) into a
    (B, dim, *spatial/stride) embedding.

    Each map goes through a 1x1 conv to ceil(dim/n) channels, is resized to the target grid,
    the n maps are concatenated and projected: 1x1 conv - BN - ReLU - 1x1 conv to `dim`.
    """

    def __init__(self, feature_channels: Sequence[int], dim: int, spatial_dims: int,
                 stride: int = 2) -> None:
        super().__init__()
        if spatial_dims not in _INTERP_MODE:
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if dim < 1 or stride < 1 or not feature_channels:
            raise ValueError(f"need dim >= 1, stride >= 1 and feature maps; got dim={dim}, "
                             f"stride={stride}, feature_channels={list(feature_channels)}")
        self.spatial_dims = spatial_dims
        self.stride = stride
        self.dim = dim
        lateral = math.ceil(dim / len(feature_channels))
        self.lateral = nn.ModuleList(
            Convolution(spatial_dims, c, lateral, kernel_size=1, conv_only=True)
            for c in feature_channels)
        self.project = nn.Sequential(
            Convolution(spatial_dims, lateral * len(feature_channels), dim, kernel_size=1,
                        act=("relu", {"inplace": True}), norm="batch", adn_ordering="NA"),
            Convolution(spatial_dims, dim, dim, kernel_size=1, conv_only=True),
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Embedding (B, dim, *size) with size = finest map's size // stride."""
        size = [s // self.stride for s in features[-1].shape[2:]]
        fused = []
        for conv, feat in zip(self.lateral, features, strict=True):
            # A 1x1 conv and linear resizing commute (the weights of a linear resize sum to 1),
            # so resize first when that shrinks the map: fewer voxels to convolve.
            if feat.shape[2:].numel() > math.prod(size):
                fused.append(conv(self._resize(feat, size)))
            else:
                fused.append(self._resize(conv(feat), size))
        return self.project(torch.cat(fused, dim=1))

    def _resize(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        if list(x.shape[2:]) == size:
            return x
        # For an exact 2x reduction, align_corners=False linear resizing equals 2x average pooling.
        return F.interpolate(x, size=size, mode=_INTERP_MODE[self.spatial_dims],
                             align_corners=False)
