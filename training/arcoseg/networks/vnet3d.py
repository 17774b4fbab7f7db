"""3D V-Net of the left-atrium semi-supervised papers (UA-MT, SS-Net, ...).

Not MONAI's `VNet`, which is the original 5x5x5 residual design: this one has 3x3x3 Conv-BN-ReLU
stages of 1, 2, 3, 3, 3 convolutions without residuals, 2x2x2 stride-2 convolutions down,
transposed convolutions up and additive skips. Its units are MONAI `Convolution` blocks; only the
wiring is written here.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

_STAGE_CONVS = (1, 2, 3, 3, 3)
_ACT = ("relu", {"inplace": True})


def _unit(in_channels: int, out_channels: int, **conv: object) -> Convolution:
    """Conv-BN-ReLU."""
    return Convolution(3, in_channels, out_channels, act=_ACT, norm="batch", adn_ordering="NA",
                       **conv)


def _stage(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """`num_convs` 3x3x3 Conv-BN-ReLU units (UA-MT `ConvBlock`, no residual)."""
    return nn.Sequential(*(_unit(in_channels if i == 0 else out_channels, out_channels)
                           for i in range(num_convs)))


def _down(in_channels: int, out_channels: int) -> Convolution:
    """2x2x2 stride-2 Conv-BN-ReLU."""
    return _unit(in_channels, out_channels, kernel_size=2, strides=2, padding=0)


def _up(in_channels: int, out_channels: int) -> Convolution:
    """2x2x2 stride-2 transposed Conv-BN-ReLU (exactly doubles the size)."""
    return _unit(in_channels, out_channels, kernel_size=2, strides=2, padding=0,
                 output_padding=0, is_transposed=True)


class VNet3D(nn.Module):
    """UA-MT style V-Net; input depth, height and width must be divisible by 16.

    With `dropout`, channel dropout (p=0.5) is applied to the bottleneck and to the last decoder
    stage, as in UA-MT (active in training mode only).
    """

    def __init__(self, in_channels: int, num_classes: int, base_filters: int = 16,
                 dropout: bool = True) -> None:
        super().__init__()
        widths = [base_filters * 2**i for i in range(5)]
        self.encoder = nn.ModuleList([_stage(_STAGE_CONVS[0], in_channels, widths[0])])
        self.encoder.extend(
            nn.Sequential(_down(widths[i - 1], widths[i]),
                          _stage(_STAGE_CONVS[i], widths[i], widths[i]))
            for i in range(1, 5))
        self.up = nn.ModuleList(_up(widths[i], widths[i - 1]) for i in range(4, 0, -1))
        self.decoder = nn.ModuleList(
            _stage(_STAGE_CONVS[i], widths[i], widths[i]) for i in range(3, -1, -1))
        self.dropout = nn.Dropout3d(0.5) if dropout else nn.Identity()
        self.out_conv = Convolution(3, widths[0], num_classes, kernel_size=1, conv_only=True)
        # Channels of the maps forward_features returns: bottleneck, then decoder coarse to fine.
        self.feature_channels = widths[::-1]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, K, D, H, W) and [bottleneck, decoder maps coarsest to finest (full res)]."""
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        features = [self.dropout(skips.pop())]
        for up, stage in zip(self.up, self.decoder):
            features.append(stage(up(features[-1]) + skips.pop()))
        features[-1] = self.dropout(features[-1])
        return self.out_conv(features[-1]), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, D, H, W)."""
        return self.forward_features(x)[0]
