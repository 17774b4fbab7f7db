"""The network inference runs on the CPU: BatchNorm folded into its convolutions, channels-last.

On the CPU (oneDNN) an eval-mode network predicts 25-40 % faster with each BatchNorm folded into
the convolution before it (`torch.fx.experimental.optimization.fuse`, PyTorch's own pass, which
folds into convolutions only; `_fold_transposed` does the same for the transposed convolutions
of the decoder with PyTorch's `fuse_conv_bn_eval(..., transpose=True)`) and its
weights in the channels-last layout (benchmarks/RESULTS.md, "Faster on the CPU"); the
logits agree with the plain network to float rounding (about 1e-6 of their size). The fused
network is a copy: the model itself is left as it was (a teacher that trains on, for instance).
On other devices the model itself is used: nothing was measured there.

Each ReLU that follows a convolution or a transposed convolution (all 29 of the 3D V-Net's) is
applied by oneDNN inside it (`_ConvReLU`, the fused kernels PyTorch's own compiler uses on the
CPU): a separate bfloat16 ReLU took about 45 % of the convolution's time in channels-last 3D
(this torch build's bfloat16 elementwise kernels are slow), the fused one almost nothing; same
values (benchmarks/RESULTS.md, "ReLU inside the 3D convolutions" and "Freed memory kept for
reuse").

Fusing costs about 0.1-0.2 s, so a model whose weights never change again (a model the `serve`
worker keeps loaded) is fused once: `keep_inference_network` marks it, and its fused copy is kept
with it for as long as the model lives.
"""

from __future__ import annotations

import platform
import weakref
from typing import Callable, Sequence

import torch
from torch import fx, nn
from torch.fx.experimental.optimization import fuse, matches_module_pattern, replace_node_module
from torch.nn.utils.fusion import fuse_conv_bn_eval

from arcoseg.train.precision import memory_format

# models whose weights never change again -> their fused copy (None until first needed)
_KEPT: weakref.WeakKeyDictionary[nn.Module, nn.Module | None] = weakref.WeakKeyDictionary()


def keep_inference_network(model: nn.Module) -> None:
    """Promise that `model`'s weights never change again, so its fused copy may be reused."""
    _KEPT.setdefault(model, None)


def inference_network(model: nn.Module, dims: int, device: torch.device) -> nn.Module:
    """What to call for logits (B, K, *spatial) of `model` in eval mode: on the CPU a fused,
    channels-last copy of its backbone (`dims` 2 or 3: the layout), elsewhere `model`."""
    if device.type != "cpu":
        return model
    if _KEPT.get(model) is not None:
        return _KEPT[model]
    model.eval()
    net = _fold_transposed(fuse(getattr(model, "backbone", model)))  # a copy of the modules
    net = _fuse_relu(net)
    net.to(memory_format=memory_format(dims, True))
    if model in _KEPT:
        _KEPT[model] = net
    return net


_TRANSPOSED = ((nn.ConvTranspose2d, nn.BatchNorm2d), (nn.ConvTranspose3d, nn.BatchNorm3d))


def _fold_transposed(net: fx.GraphModule) -> fx.GraphModule:
    """`net` (in place) with each BatchNorm that follows a transposed convolution (and is its
    only reader) folded into it, as `fuse` does for plain convolutions."""
    return _merge_pairs(net, _TRANSPOSED, lambda conv, bn: (
        fuse_conv_bn_eval(conv, bn, transpose=True) if bn.track_running_stats else None))


_Merge = Callable[[nn.Module, nn.Module], nn.Module | None]


def _merge_pairs(net: fx.GraphModule, patterns: Sequence[tuple[type, type]],
                 merge: _Merge) -> fx.GraphModule:
    """`net` (in place) with each pair of modules (first, second) of one of `patterns`, where
    second is first's only reader, replaced by `merge(first, second)` (None: left as it is)."""
    modules = dict(net.named_modules())
    for pattern in patterns:
        for node in list(net.graph.nodes):
            if not matches_module_pattern(pattern, node, modules) or len(node.args[0].users) > 1:
                continue
            merged = merge(modules[node.args[0].target], modules[node.target])
            if merged is None:
                continue
            replace_node_module(node.args[0], modules, merged)
            node.replace_all_uses_with(node.args[0])
            net.graph.erase_node(node)
    net.delete_all_unused_submodules()
    net.recompile()
    return net


# oneDNN's convolutions with a pointwise epilogue (what torch.compile emits on the CPU); used on
# x86-64 with oneDNN only, where they were measured; elsewhere the ReLUs stay separate
_ONEDNN = torch.backends.mkldnn.is_available() and platform.machine().lower() in ("x86_64",
                                                                                   "amd64")
_CONV_POINTWISE = getattr(torch.ops.mkldnn, "_convolution_pointwise", None) if _ONEDNN else None
_TRANSPOSE_POINTWISE = (getattr(torch.ops.mkldnn, "_convolution_transpose_pointwise", None)
                        if _ONEDNN else None)
_CONVS = ((nn.Conv2d, nn.ReLU), (nn.Conv3d, nn.ReLU))
_TRANSPOSED_CONVS = ((nn.ConvTranspose2d, nn.ReLU), (nn.ConvTranspose3d, nn.ReLU))
_ConvNd = nn.Conv2d | nn.Conv3d | nn.ConvTranspose2d | nn.ConvTranspose3d


class _ConvReLU(nn.Module):
    """relu(conv(x)) in one oneDNN call, for a convolution or a transposed convolution; under
    CPU autocast in its dtype, as the convolution alone would run (autocast does not know
    these operators)."""

    def __init__(self, conv: _ConvNd) -> None:
        super().__init__()
        self.conv = conv
        self._cast: tuple[torch.dtype, torch.Tensor, torch.Tensor | None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        weight, bias = conv.weight, conv.bias
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
            x = x.to(dtype)
            weight, bias = self._weights(dtype)
        padding = list(conv.padding)
        rest = [list(conv.stride), list(conv.dilation), conv.groups, "relu", [], ""]
        if conv.transposed:
            return _TRANSPOSE_POINTWISE(x, weight, bias, padding, list(conv.output_padding),
                                        *rest)
        return _CONV_POINTWISE(x, weight, bias, padding, *rest)

    def _weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias in `dtype`, cast once: this module belongs to a fused copy whose
        weights never change (casting on every pass made a warm 3D segment 0.1-0.3 s slower:
        benchmarks/RESULTS.md, "Fused convolutions cast their weights once")."""
        if self._cast is None or self._cast[0] != dtype:
            bias = self.conv.bias
            self._cast = (dtype, self.conv.weight.to(dtype),
                          None if bias is None else bias.to(dtype))
        return self._cast[1], self._cast[2]


def _fusable(conv: _ConvNd) -> bool:
    """Zero padding given as numbers ('same' padding or other modes are left alone)."""
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def _fuse_relu(net: fx.GraphModule) -> fx.GraphModule:
    """`net` (in place) with each ReLU module that is a (transposed) convolution's only reader
    fused into it (`_ConvReLU`)."""
    patterns = (*(_CONVS if _CONV_POINTWISE is not None else ()),
                *(_TRANSPOSED_CONVS if _TRANSPOSE_POINTWISE is not None else ()))
    return _merge_pairs(net, patterns, lambda conv, relu: (
        _ConvReLU(conv) if _fusable(conv) else None))
