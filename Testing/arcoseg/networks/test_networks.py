"""Backbones, representation head and SegmentationModel: shapes, feature maps, gradients."""

from __future__ import annotations

import pytest
import torch

from arcoseg.networks import RepresentationHead, SegmentationModel, UNet2D, VNet3D

SMALL_2D = (4, 8, 16, 32, 64)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_unet2d_gives_logits_at_input_size_and_features_coarse_to_fine() -> None:
    net = UNet2D(1, 4)
    logits, features = net.forward_features(torch.randn(1, 1, 32, 32))
    assert logits.shape == (1, 4, 32, 32)
    assert [tuple(f.shape) for f in features] == [
        (1, 256, 2, 2), (1, 128, 4, 4), (1, 64, 8, 8), (1, 32, 16, 16), (1, 16, 32, 32)]
    assert net.feature_channels == [256, 128, 64, 32, 16]


def test_unet2d_forward_returns_the_logits_of_forward_features() -> None:
    net = UNet2D(2, 3, SMALL_2D).eval()
    x = torch.randn(2, 2, 32, 48)
    torch.testing.assert_close(net(x), net.forward_features(x)[0])


def test_unet2d_has_the_ssl4mis_parameter_count() -> None:
    # 4 double-conv encoder levels + bottleneck, 4 transposed-conv up blocks, 3x3 output conv.
    assert sum(p.numel() for p in UNet2D(1, 4).parameters()) == 1_944_324


def test_unet2d_encoder_dropout_is_active_in_training_only() -> None:
    net = UNet2D(1, 2, SMALL_2D)
    x = torch.randn(2, 1, 32, 32)
    net.train()
    assert not torch.allclose(net(x), net(x))
    net.eval()
    torch.testing.assert_close(net(x), net(x))


def test_vnet3d_gives_logits_at_input_size_and_features_coarse_to_fine() -> None:
    net = VNet3D(1, 2).eval()
    logits, features = net.forward_features(torch.randn(1, 1, 16, 16, 16))
    assert logits.shape == (1, 2, 16, 16, 16)
    assert [tuple(f.shape) for f in features] == [
        (1, 256, 1, 1, 1), (1, 128, 2, 2, 2), (1, 64, 4, 4, 4), (1, 32, 8, 8, 8),
        (1, 16, 16, 16, 16)]
    assert net.feature_channels == [256, 128, 64, 32, 16]


def test_vnet3d_has_the_ua_mt_parameter_count() -> None:
    assert sum(p.numel() for p in VNet3D(1, 2).parameters()) == 9_448_866


def test_vnet3d_without_dropout_is_deterministic_in_training_mode() -> None:
    x = torch.randn(2, 1, 16, 16, 32)
    stochastic, plain = VNet3D(1, 2, base_filters=4), VNet3D(1, 2, base_filters=4, dropout=False)
    assert not torch.allclose(stochastic(x), stochastic(x))
    torch.testing.assert_close(plain(x), plain(x))


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_head_embeds_2d_features_at_input_over_stride(stride: int) -> None:
    net = UNet2D(1, 2, SMALL_2D)
    head = RepresentationHead(net.feature_channels, dim=24, spatial_dims=2, stride=stride)
    _, features = net.forward_features(torch.randn(2, 1, 32, 64))
    assert head(features).shape == (2, 24, 32 // stride, 64 // stride)


def test_head_embeds_3d_features_at_input_over_stride() -> None:
    net = VNet3D(1, 2, base_filters=4)
    head = RepresentationHead(net.feature_channels, dim=16, spatial_dims=3)
    _, features = net.forward_features(torch.randn(2, 1, 16, 32, 16))
    assert head(features).shape == (2, 16, 8, 16, 8)


def test_head_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="spatial_dims"):
        RepresentationHead([8, 4], dim=8, spatial_dims=1)
    with pytest.raises(ValueError, match="stride"):
        RepresentationHead([8, 4], dim=8, spatial_dims=2, stride=0)


@pytest.mark.parametrize("backbone, shape", [
    (lambda: UNet2D(1, 3, SMALL_2D), (2, 1, 32, 32)),
    (lambda: VNet3D(1, 3, base_filters=4), (2, 1, 16, 16, 16)),
])
def test_contrastive_gradient_reaches_head_and_every_backbone_level(backbone, shape) -> None:
    net = backbone()
    model = SegmentationModel(net, RepresentationHead(net.feature_channels, 16, len(shape) - 2))
    _, embeddings = model.forward_train(torch.randn(*shape))
    embeddings.pow(2).mean().backward()
    head_grads = [p.grad for p in model.head.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head_grads)
    first_conv = next(model.backbone.encoder[0].parameters())
    bottleneck_conv = next(model.backbone.encoder[4].parameters())
    assert first_conv.grad.abs().sum() > 0 and bottleneck_conv.grad.abs().sum() > 0
    assert model.backbone.out_conv.conv.weight.grad is None  # logits were not in the loss


def test_segmentation_model_without_head_gives_no_embeddings() -> None:
    model = SegmentationModel(UNet2D(1, 2, SMALL_2D)).eval()
    x = torch.randn(1, 1, 32, 32)
    logits, embeddings = model.forward_train(x)
    assert embeddings is None
    torch.testing.assert_close(logits, model(x))


def test_segmentation_model_forward_and_forward_train_share_logits() -> None:
    net = UNet2D(1, 2, SMALL_2D)
    model = SegmentationModel(net, RepresentationHead(net.feature_channels, 8, 2)).eval()
    x = torch.randn(1, 1, 32, 32)
    logits, embeddings = model.forward_train(x)
    torch.testing.assert_close(logits, model(x))
    assert embeddings.shape == (1, 8, 16, 16)
