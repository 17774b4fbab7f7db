"""The network inference runs on the CPU: BatchNorm folded into its convolutions, channels-last.

On the CPU (oneDNN) an eval-mode network predicts 25-40 % faster with each BatchNorm folded into
the convolution before it (`torch.fx.experimental.optimization.fuse`, PyTorch's own pass) and its
weights in the channels-last layout (benchmarks/RESULTS.md, "Faster on the CPU"); the
logits agree with the plain network to float rounding (about 1e-6 of their size). The fused
network is a copy: the model itself is left as it was (a teacher that trains on, for instance).
On other devices the model itself is used: nothing was measured there.

Fusing costs about 0.1-0.2 s, so a model whose weights never change again (a model the `serve`
worker keeps loaded) is fused once: `keep_inference_network` marks it, and its fused copy is kept
with it for as long as the model lives.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

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
    net = fuse(getattr(model, "backbone", model))  # a copy; `model` keeps its own modules
    net.to(memory_format=memory_format(dims, True))
    if model in _KEPT:
        _KEPT[model] = net
    return net
