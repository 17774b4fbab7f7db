"""Compute-device selection: `auto` prefers CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from arcoseg.constants import DEVICE_CHOICES
from arcoseg.errors import DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a user's device choice into a torch.device, or raise DeviceError if it is absent."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name} was requested but no CUDA GPU is usable here "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). "
                              "Use --device auto or --device cpu, or install a CUDA build of torch.")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise DeviceError("--device mps was requested but Apple MPS is not available. "
                              "Use --device auto or --device cpu.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"Unknown device '{name}'. Choose one of: {', '.join(DEVICE_CHOICES)}.")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_device(device: torch.device) -> dict[str, str | bool | None]:
    """What the user should see: device kind and name, torch version, the CUDA version torch
    was built for (None for a CPU build), and a CPU warning flag."""
    name = "CPU"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple MPS"
    return {"device": str(device), "name": name, "torch": torch.__version__,
            "cuda_version": torch.version.cuda, "is_cpu": device.type == "cpu"}


def autocast_dtype(device: torch.device, enabled: bool = True, dims: int = 2,
                   inference: bool = False) -> torch.dtype | None:
    """The dtype `autocast` computes in (None: float32, no autocast): on GPUs bf16 where
    supported, else fp16; on CPUs with native bf16 arithmetic (`cpu_has_native_bf16`) bf16
    for 2D networks (`dims`) and for inference (`inference`) of 3D ones, where it predicts
    about 2x faster than float32 with the same Dice and Adapt trains 1.5x faster
    (benchmarks/RESULTS.md, "Faster on the CPU" and "3D inference"); elsewhere None. 3D
    networks train in float32 on the CPU: bf16 training of the 3D V-Net on batch-1 patches drove
    BatchNorm's running variance to infinity (Testing/arcoseg/adapt/test_run.py); emulated bf16
    (CPUs without it) would be slower."""
    if enabled and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if (enabled and device.type == "cpu" and (dims == 2 or inference)
            and cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True, dims: int = 2,
             inference: bool = False) -> ContextManager:
    """Mixed precision of inference (`inference`) and training in `autocast_dtype`'s dtype
    (nothing where that is None)."""
    dtype = autocast_dtype(device, enabled, dims, inference)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), so that oneDNN's
    bf16 convolutions beat float32. torch has no public query; its private one is used where
    it exists (False otherwise: float32 is always correct)."""
    cpu = getattr(torch, "cpu", None)
    probes = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported",
                                                    "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)
