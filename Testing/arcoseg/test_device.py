"""Device choice: auto falls back to the CPU; a missing GPU is a clear error."""

import pytest
import torch

from arcoseg.device import describe_device, resolve_device
from arcoseg.errors import DeviceError


def test_auto_picks_cuda_when_present_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else None
    device = resolve_device("auto")
    assert device.type in ("cuda", "mps", "cpu")
    if expected:
        assert device.type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_refused_with_advice():
    with pytest.raises(DeviceError, match="no CUDA GPU.*--device cpu"):
        resolve_device("cuda")


def test_unknown_device_is_refused():
    with pytest.raises(DeviceError, match="Unknown device"):
        resolve_device("tpu")


def test_cpu_description_warns():
    info = describe_device(torch.device("cpu"))
    assert info["is_cpu"] is True and info["torch"] == torch.__version__


def test_native_bf16_follows_the_cpus_flags():
    from pathlib import Path

    from arcoseg.device import cpu_has_native_bf16

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = set(next(line for line in cpuinfo.read_text().splitlines()
                     if line.startswith("flags")).split())
    assert cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_tile"})
