"""Mixed precision and memory layout of training (`--amp`, `--channels-last`).

`--amp` is off by default: it becomes the default only once measured faster on a GPU with an
unchanged validation Dice at the paper profile (training/benchmarks/gpu_check.sh; not measured
yet, issue 16). Channels-last is on by default on the CPU only, where it was measured
(benchmarks/RESULTS.md, "Channels-last on the CPU"); elsewhere off until measured.

- `--amp` on CUDA: autocast to bfloat16 (float16 with a GradScaler where the GPU has no bf16).
  The weights stay float32 (autocast casts per operation, the optimiser updates float32
  master weights, the EMA teacher is float32), and the losses that need float32 compute in it:
  the supervised and pseudo-label losses cast the logits to float32, the contrastive and
  nearest-neighbour losses run with autocast off. On the CPU and Apple MPS `--amp` does nothing
  (bfloat16 autocast on a CPU is correct but usually slower); the tests run the methods under
  CPU bfloat16 autocast directly to check the float32 paths.
- `--channels-last`: the student, the teacher and the input batches use the channels-last
  memory format (channels_last_3d in 3D). On the CPU oneDNN's convolutions run 20-30 % faster
  in it (training and inference steps, 2 threads), with the same results up to float rounding;
  cuDNN prefers it under autocast, but only a GPU measurement can say whether it helps there.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from torch import nn


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def uses_grad_scaler(device: torch.device, amp: bool) -> bool:
    """float16 autocast (a GPU without bfloat16) needs loss scaling."""
    return amp and device.type == "cuda" and not bf16_supported(device)


def training_autocast(device: torch.device, amp: bool) -> ContextManager:
    """Autocast of the training step: bf16 (else fp16) on CUDA with `amp`; otherwise none."""
    if not amp or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if bf16_supported(device) else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


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

