"""Counting host synchronisations of a piece of training code (issue 16: at most one per step).

On CUDA, `torch.cuda.set_sync_debug_mode` reports every operation that makes the host wait for
the GPU; `count_host_syncs` counts those warnings. On the CPU nothing waits, so it counts what
*would* block on a GPU instead (`HostSyncCounter`): ATen operations that read a value on the host
or give a data-dependent shape (seen by a TorchDispatchMode, so calls from inside torch or MONAI
are caught too), and the Python conversions that copy a tensor to the host (`tolist`, `numpy`,
`cpu`), which never reach the dispatcher on the CPU.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any, Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
READS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten._unique2,
         aten.unique_dim, aten.unique_consecutive, aten.equal, aten.bincount, aten.histc}
PYTHON_COPIES = ("tolist", "numpy", "cpu", "__array__")
# Host-only tensors: MONAI's DiceLoss turns `torch.arange(2, ndim)` (made on the CPU whatever the
# device) into a list of axes; on a GPU that is no transfer.
HOST_ONLY = ("monai/losses/dice.py",)


class HostSyncCounter(TorchDispatchMode):
    """Records (in `calls`) every operation that needs a value on the host, while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in READS or _boolean_index(packet, args) or (
                packet is aten.repeat_interleave and kwargs.get("output_size") is None):
            self.calls.append(str(func))
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def python_copies(self) -> Iterator[None]:
        """Also record Tensor.tolist / numpy / cpu / __array__ called from Python."""
        originals = {name: getattr(torch.Tensor, name) for name in PYTHON_COPIES}

        def wrap(name: str, original: Callable) -> Callable:
            def wrapper(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
                if not caller.endswith(HOST_ONLY):
                    self.calls.append(f"Tensor.{name}")
                return original(tensor, *args, **kwargs)
            return wrapper

        try:
            for name, original in originals.items():
                setattr(torch.Tensor, name, wrap(name, original))
            yield
        finally:
            for name, original in originals.items():
                setattr(torch.Tensor, name, original)


def _boolean_index(packet: Any, args: tuple) -> bool:
    if packet not in (aten.index, aten.index_put, aten.index_put_):
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ())


def count_host_syncs(fn: Callable[[], Any], device: torch.device) -> int:
    """Host synchronisations while running `fn()`: real ones on CUDA, would-be ones elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)
    counter = HostSyncCounter()
    with counter.python_copies(), counter:
        fn()
    return len(counter.calls)
