"""Networks: 2D U-Net, 3D V-Net, representation head, `SegmentationModel`, `NetworkConfig`."""

from arcoseg.networks.head import RepresentationHead
from arcoseg.networks.model import (DEFAULT_HEAD_DIM, NetworkConfig, SegmentationModel,
                                    build_model)
from arcoseg.networks.unet2d import UNet2D
from arcoseg.networks.vnet3d import VNet3D

__all__ = ["DEFAULT_HEAD_DIM", "NetworkConfig", "RepresentationHead", "SegmentationModel",
           "UNet2D", "VNet3D", "build_model"]
