"""The compute device as the panel shows it, from `arcoseg device --progress json`. No Slicer.

The Logic runs the command (`device_args`); this module parses and words its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ARCOSegmentLib.engine import device_option


@dataclass(frozen=True)
class DeviceInfo:
    """What `arcoseg device` reports."""

    device: str
    name: str
    torch: str
    cuda_version: str
    is_cpu: bool

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> DeviceInfo:
        """Parse the engine's result event."""
        return cls(device=str(result.get("device", "cpu")), name=str(result.get("name", "CPU")),
                   torch=str(result.get("torch", "")),
                   cuda_version=str(result.get("cuda_version") or ""),
                   is_cpu=bool(result.get("is_cpu", True)))


def device_args(cpu_only: bool = False) -> list[str]:
    """Arguments of the device query (the CPU override also forces `--device cpu`)."""
    return ["device", *device_option(cpu_only)]


def describe(info: DeviceInfo) -> str:
    """One line for the panel, e.g. 'NVIDIA H100 (cuda) · torch 2.13.0 · CUDA 12.8'."""
    parts = [f"{info.name} ({info.device})" if not info.is_cpu else "CPU"]
    if info.torch:
        parts.append(f"torch {info.torch}")
    if info.cuda_version and not info.is_cpu:
        parts.append(f"CUDA {info.cuda_version}")
    return " · ".join(parts)


def cpu_warning(info: DeviceInfo, forced: bool = False) -> str:
    """The loud warning shown when runs will use the CPU; empty on a GPU."""
    if not info.is_cpu:
        return ""
    if forced:
        return ("Running on the CPU (override is on): segmentation is slow and adapting a model "
                "can take many minutes. Untick 'Use CPU only' to use the GPU.")
    if info.cuda_version:
        reason = ("PyTorch was built for CUDA " + info.cuda_version
                  + " but no usable GPU was found (check the NVIDIA driver)")
    else:
        reason = "the installed PyTorch has no GPU support"
    return (f"No GPU: {reason}. ARCOSegment falls back to the CPU, which is slow; adapting a "
            "model can take many minutes. Reinstall PyTorch with CUDA from the PyTorch Utils "
            "module if this computer has an NVIDIA GPU.")
