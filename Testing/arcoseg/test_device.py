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


@pytest.mark.parametrize("native", [True, False])
def test_autocast_dtype_is_bf16_on_native_cpus_for_2d_and_3d_inference(native, monkeypatch):
    import arcoseg.device as device_module
    from arcoseg.train.precision import uses_grad_scaler

    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert device_module.autocast_dtype(cpu, True, 2) == (torch.bfloat16 if native else None)
    assert device_module.autocast_dtype(cpu, True, 3) is None  # 3D trains in float32 ...
    assert device_module.autocast_dtype(cpu, True, 3, inference=True) == (  # ... and predicts
        torch.bfloat16 if native else None)
    assert device_module.autocast_dtype(cpu, False, 3, inference=True) is None
    assert device_module.autocast_dtype(cpu, False, 2) is None
    with device_module.autocast(cpu, True, 2):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 or not native
        assert torch.is_autocast_enabled("cpu") == native
    assert not uses_grad_scaler(cpu, True, 2)  # loss scaling is for float16 on GPUs only
