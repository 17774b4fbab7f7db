"""A training step never waits for the device: at most one host synchronisation per step (the
log record every `log_every` iterations), for every method in 2D and 3D.

On the CPU nothing actually waits, so `HostSyncCounter` counts what would block on a GPU (see
arcoseg.train.host_sync); the first test checks that it sees the usual culprits.
"""

import pytest
import torch

from arcoseg.data.synthetic import make_phantom_dataset
from arcoseg.progress import Reporter
from arcoseg.train.host_sync import HostSyncCounter, count_host_syncs
from arcoseg.train.options import TrainOptions
from arcoseg.train.trainer import Trainer, prepare_data


def test_the_counter_sees_value_reads_data_dependent_shapes_and_host_copies():
    x = torch.arange(6.0)
    culprits = [lambda: x.sum().item(), lambda: float(x[0]), lambda: bool(x.any()),
                lambda: x[x > 2], lambda: x.nonzero(), lambda: x.tolist(), lambda: x.numpy(),
                lambda: torch.unique(x), lambda: torch.repeat_interleave(x.long())]
    assert [count_host_syncs(f, torch.device("cpu")) for f in culprits] == [1] * len(culprits)
    fine = [lambda: x.sum() * 2, lambda: torch.where(x > 2, x, 0), lambda: x.topk(2),
            lambda: torch.repeat_interleave(x.long(), x.long(), output_size=15),
            lambda: x.argsort()]
    assert [count_host_syncs(f, torch.device("cpu")) for f in fine] == [0] * len(fine)


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
def test_at_most_one_host_synchronisation_per_step(dataset, method, tmp_path):
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
    per_step = []
    for _ in range(6):
        counter.calls.clear()
        with counter.python_copies(), counter:
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
