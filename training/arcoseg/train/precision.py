"""Mixed precision and memory layout of training (`--amp`, `--channels-last`).

`arcoseg train --amp` is off by default: it becomes the default only once measured faster on a
GPU with an unchanged validation Dice at the paper profile (training/benchmarks/gpu_check.sh; not
measured yet, issue 16). Adapt keeps its `--no-amp` default (on), measured on the CPU
(benchmarks/RESULTS.md, "Faster on the CPU"). Channels-last is on by default on the CPU only,
where it was measured (same section); elsewhere off until measured.

- amp: the step runs under `arcoseg.device.autocast`: bfloat16 on CUDA (float16 with a
  GradScaler where the GPU has no bf16) and, for 2D networks, on CPUs with native bfloat16
  (AVX512-BF16, AMX; 1.4-1.6x faster steps there); nothing on other CPUs (emulated bf16 is
  slower), for 3D networks on the CPU (see `device.autocast`) and on Apple MPS.
  The weights stay float32 (autocast casts per operation, the optimiser updates float32
  master weights, the EMA teacher is float32), and the losses that need float32 compute in it:
  the supervised and pseudo-label losses cast the logits to float32, the contrastive and
  nearest-neighbour losses run with autocast off.
- `--channels-last`: the student, the teacher and the input batches use the channels-last
  memory format (channels_last_3d in 3D). On the CPU oneDNN's convolutions run 20-30 % faster
  in it (training and inference steps, 2 threads), with the same results up to float rounding;
  cuDNN prefers it under autocast, but only a GPU measurement can say whether it helps there.
"""

from __future__ import annotations

import torch
from torch import nn

from arcoseg.device import autocast_dtype


def uses_grad_scaler(device: torch.device, amp: bool, dims: int = 2) -> bool:
    """float16 autocast (a GPU without bfloat16) needs loss scaling."""
    return autocast_dtype(device, amp, dims) == torch.float16


def memory_format(dims: int, channels_last: bool | None,
                  device: torch.device | None = None) -> torch.memory_format:
    """channels_last (2D) / channels_last_3d (3D) when asked, else contiguous; None (the
    default) asks for it on the CPU only (see the module doc)."""
    if channels_last is None:
        channels_last = device is not None and device.type == "cpu"
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def to_memory_format(model: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """The model's 4D/5D weights in `fmt` (in place)."""
    return model.to(memory_format=fmt) if fmt != torch.contiguous_format else model

