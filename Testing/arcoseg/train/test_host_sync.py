"""A training step never waits for the device: at most one host synchronisation per step (the
log record every `log_every` iterations), for every method in 2D and 3D.

On the CPU nothing actually waits, so the test counts the operations that *would* block on a GPU:
ATen ops that read a value or produce a data-dependent shape (seen by a TorchDispatchMode, so
calls from inside torch, MONAI or numpy conversions are caught too), and the Python conversions
that copy to the host (`tolist`, `numpy`, `cpu`, which never reach the dispatcher on the CPU).
"""

import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from arcoseg.data.synthetic import make_phantom_dataset
from arcoseg.progress import Reporter
from arcoseg.train.options import TrainOptions
from arcoseg.train.trainer import Trainer, prepare_data

aten = torch.ops.aten
READS = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten._unique2,
         aten.unique_dim, aten.unique_consecutive, aten.equal, aten.bincount, aten.histc}
PYTHON_COPIES = ("tolist", "numpy", "cpu", "__array__")


class HostSyncCounter(TorchDispatchMode):
    """Records every operation of the step that needs a value on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        if packet in READS or _boolean_index(packet, args) or (
                packet is aten.repeat_interleave and kwargs.get("output_size") is None):
            self.calls.append(str(func))
        return func(*args, **kwargs)


def _boolean_index(packet, args) -> bool:
    if packet not in (aten.index, aten.index_put, aten.index_put_):
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ())


# Host-only tensors: MONAI's DiceLoss turns `torch.arange(2, ndim)` (made on the CPU whatever
# the device) into a list of axes; on a GPU that is no transfer.
HOST_ONLY = ("monai/losses/dice.py",)


def count_python_copies(monkeypatch, counter: HostSyncCounter) -> None:
    for name in PYTHON_COPIES:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *a, __original=original, __name=name, **kw):
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if not caller.endswith(HOST_ONLY):
                counter.calls.append(f"Tensor.{__name}")
            return __original(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, wrapper)


@pytest.fixture(scope="module", params=[2, 3], ids=["2d", "3d"])
def dataset(request, tmp_path_factory):
    shape = (6, 32, 32) if request.param == 2 else (18, 20, 20)
    root = make_phantom_dataset(tmp_path_factory.mktemp("ds") / "Phantom", num_cases=4,
                                shape_zyx=shape, val_cases=1)
    return request.param, root


METHODS = {"supervised": dict(method="supervised"), "mean_teacher": dict(method="mean_teacher"),
           "arco-ns": dict(method="arco", sampler="ns"), "arco-sg": dict(method="arco"),
           "arco-sag": dict(method="arco", sampler="sag"),
           "arco-sg-early-stop": dict(method="arco", early_stop=True)}


@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS.keys())
def test_at_most_one_host_synchronisation_per_step(dataset, method, tmp_path, monkeypatch):
    dims, root = dataset
    if dims == 3 and method.get("early_stop"):
        pytest.skip("the early-stop reads do not depend on the dimension (2D covers them)")
    patch = (32, 32) if dims == 2 else (16, 16, 16)
    options = TrainOptions(dims=dims, labelled=2, iterations=100, batch=2, patch=patch,
                           device="cpu", val_every=10**6, checkpoint_every=10**6, log_every=3,
                           cache_dir=tmp_path / "cache", **method)
    data = prepare_data(root, options, Reporter(quiet=True))
    trainer = Trainer(data, options, tmp_path / "model", Reporter(quiet=True))
    counter = HostSyncCounter()
    count_python_copies(monkeypatch, counter)
    per_step = []
    for _ in range(6):
        counter.calls.clear()
        with counter:
            trainer._step()
            trainer._fit_budget()
        per_step.append(list(counter.calls))
    # iterations 3 and 6 write a log record: one transfer each, which also carries the
    # early-stop losses; with early stopping iteration 5 (a budget window) reads the losses of
    # 4 and 5; every other step reads nothing at all
    expected = [0, 0, 1, 0, 1, 1] if options.early_stop else [0, 0, 1, 0, 0, 1]
    assert [len(calls) for calls in per_step] == expected, per_step
    assert all(calls in ([], ["Tensor.tolist"]) for calls in per_step)
    if options.early_stop:
        assert len(trainer.convergence.losses) == 6
