"""2D U-Net of SSL4MIS (the network behind the ACDC semi-supervised results).

Built from MONAI blocks (`Convolution` for Conv-BN-LeakyReLU(-Dropout) units, `UpSample` for the
transposed-conv upsampling). `monai.networks.nets.BasicUNet` is not used as is: it returns logits
only (the representation head needs the decoder feature maps) and puts dropout after both
convolutions of a block, while SSL4MIS puts it between them; so the wiring is written here.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn

DEFAULT_FEATURES = (16, 32, 64, 128, 256)
DEFAULT_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)

# nn.LeakyReLU's default slope, as in SSL4MIS; in place saves activation memory.
_ACT = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})


def _double_conv(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Conv3x3-BN-LeakyReLU-Dropout-Conv3x3-BN-LeakyReLU (SSL4MIS `ConvBlock`)."""
    return nn.Sequential(
        Convolution(2, in_channels, out_channels, act=_ACT, norm="batch",
                    dropout=dropout or None, adn_ordering="NAD"),
        Convolution(2, out_channels, out_channels, act=_ACT, norm="batch", adn_ordering="NA"),
    )


class _Up(nn.Module):
    """Transposed-conv 2x upsampling, concatenation with the skip, double conv (no dropout)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = UpSample(2, in_channels, skip_channels, scale_factor=2, mode="deconv")
        self.conv = _double_conv(2 * skip_channels, out_channels, 0.0)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet2D(nn.Module):
    """SSL4MIS U-Net: 5 levels, max-pool down, encoder dropout per level, concatenation skips.

    Input height and width must be divisible by 16.
    """

    def __init__(self, in_channels: int, num_classes: int,
                 features: Sequence[int] = DEFAULT_FEATURES,
                 dropout: Sequence[float] = DEFAULT_DROPOUT) -> None:
        super().__init__()
        features, dropout = tuple(features), tuple(dropout)
        if len(features) != 5 or len(dropout) != 5:
            raise ValueError(f"UNet2D needs 5 feature widths and 5 dropout rates, got "
                             f"{features} and {dropout}")
        self.encoder = nn.ModuleList([_double_conv(in_channels, features[0], dropout[0])])
        self.encoder.extend(
            nn.Sequential(nn.MaxPool2d(2), _double_conv(features[i - 1], features[i], dropout[i]))
            for i in range(1, 5))
        self.decoder = nn.ModuleList(
            _Up(features[i], features[i - 1], features[i - 1]) for i in range(4, 0, -1))
        self.out_conv = Convolution(2, features[0], num_classes, kernel_size=3, conv_only=True)
        # Channels of the maps forward_features returns: bottleneck, then decoder coarse to fine.
        self.feature_channels = [features[4], *features[3::-1]]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, K, H, W) and [bottleneck, decoder maps coarsest to finest (full res)]."""
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        features = [skips.pop()]
        for up in self.decoder:
            features.append(up(features[-1], skips.pop()))
        return self.out_conv(features[-1]), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W)."""
        return self.forward_features(x)[0]
