"""Inference on the CPU runs a BatchNorm-folded, channels-last copy of the network: same logits,
the model itself untouched, reused only for a model whose weights are promised not to change."""

import pytest
import torch

import arcoseg.networks.fused as fused_module
from arcoseg.networks.fused import inference_network, keep_inference_network
from arcoseg.networks.model import NetworkConfig, build_model

CPU = torch.device("cpu")


def _trained_looking(arch: str) -> torch.nn.Module:
    """A fresh network whose BatchNorm statistics and affine weights are not the identity
    (fresh ones would hide a wrong fold)."""
    torch.manual_seed(0)
    model = build_model(NetworkConfig(arch=arch, num_classes=3, head_dim=16))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("arch, shape", [("unet2d", (3, 1, 32, 32)), ("vnet3d", (1, 1, 16, 32, 32))])
def test_the_fused_network_gives_the_models_logits(arch, shape):
    model = _trained_looking(arch)
    dims = len(shape) - 2
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
        net = inference_network(model, dims, CPU)
        got = net(x)
    assert torch.allclose(got, expected, atol=1e-4 * expected.abs().max().item())
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))
             and m.in_channels > 1 and m.kernel_size[0] > 1]
    assert convs and all(c.weight.is_contiguous(memory_format=layout) for c in convs)
    # every BatchNorm is folded, those after the transposed convolutions of the 3D network's
    # up-sampling too (torch.fx's own pass leaves these)
    assert _count_norms(net) == 0 < _count_norms(model)
    # the model keeps its own BatchNorm layers and contiguous weights
    assert all(p.is_contiguous() for p in model.parameters())


def test_relus_after_convolutions_run_inside_them_in_float32_and_under_bfloat16_autocast():
    model = _trained_looking("vnet3d")
    x = torch.randn(1, 1, 16, 32, 32)
    net = inference_network(model, 3, CPU)
    relus = [m for m in model.backbone.modules() if isinstance(m, torch.nn.ReLU)]
    fused = [m for m in net.modules() if type(m).__name__ == "_ConvReLU"]
    transposed = [m for m in fused if m.conv.transposed]
    # all 29 ReLUs follow a convolution (25) or a transposed one (4): each is fused where
    # oneDNN's fused kernels are used (x86-64), else none is
    assert len(relus) == 29
    assert len(fused) == (29 if fused_module._CONV_POINTWISE is not None else 0)
    assert len(transposed) == (4 if fused_module._TRANSPOSE_POINTWISE is not None else 0)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-4 * model(x).abs().max().item())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            expected, got = model(x), net(x)
    assert got.dtype == expected.dtype == torch.bfloat16
    assert (got.float() - expected.float()).abs().max() <= 0.05 * expected.float().abs().max()


def _count_norms(module: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def test_a_model_that_may_change_is_fused_afresh_each_time():
    model = _trained_looking("unet2d")
    x = torch.randn(2, 1, 32, 32)
    first = inference_network(model, 2, CPU)
    with torch.no_grad():
        before = first(x)
        for p in model.parameters():
            p.mul_(0.5)
        second = inference_network(model, 2, CPU)
        assert second is not first
        assert torch.allclose(second(x), model(x), atol=1e-4)
        assert not torch.allclose(second(x), before, atol=1e-3)


def test_a_kept_model_is_fused_once():
    model = _trained_looking("unet2d")
    keep_inference_network(model)
    assert inference_network(model, 2, CPU) is inference_network(model, 2, CPU)


def test_other_devices_use_the_model_itself():
    model = _trained_looking("unet2d")
    assert inference_network(model, 2, torch.device("cuda")) is model


@pytest.mark.skipif(fused_module._CONV_POINTWISE is None, reason="oneDNN's fused kernels only")
def test_a_fused_convolution_casts_its_weights_once_per_dtype():
    net = inference_network(_trained_looking("vnet3d"), 3, CPU)
    layer = next(m for m in net.modules() if type(m).__name__ == "_ConvReLU")
    x = torch.randn(1, 1, 16, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
        first = layer._weights(torch.bfloat16)[0]
        net(x)
    assert layer._weights(torch.bfloat16)[0] is first and first.dtype == torch.bfloat16
    assert torch.equal(first, layer.conv.weight.to(torch.bfloat16))
