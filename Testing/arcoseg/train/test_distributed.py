"""Data-parallel training (DDP) on the CPU: two processes with the gloo backend, as torchrun
starts them (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in the environment).

One spawn runs three checks in the two workers (the process start dominates the cost):
1. ARCO-SG trains on both ranks, which end with the same teacher, memory bank and queue;
2. a run stopped at iteration 5 and resumed ends exactly where an uninterrupted one does;
3. supervised training through `train()` (the CLI's entry point) matches a single process with
   the same global batch within a tolerance: not exactly, because each rank takes the Dice loss
   and the BatchNorm statistics of its own half of the batch (documented in ARCHITECTURE.md),
   but an order of magnitude closer than a single process with another seed.
"""

import json
import os
import shutil
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from arcoseg.data.synthetic import make_phantom_dataset
from arcoseg.errors import ArcosegError, Cancelled
from arcoseg.progress import Reporter
from arcoseg.train import distributed
from arcoseg.train.options import TrainOptions
from arcoseg.train.run import train
from arcoseg.train.trainer import Trainer, prepare_data

WORLD = 2


def options(tmp, **kw) -> TrainOptions:
    base = dict(dims=2, labelled=2, iterations=6, batch=4, patch=(32, 32), device="cpu",
                val_every=10**6, checkpoint_every=10**6, log_every=5, seed=3,
                cache_dir=tmp / "cache", method="arco", lambda_c=0.1)
    return TrainOptions(**(base | kw))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _method_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in trainer.method.state_dict().items()
            if k != "generator"}  # each rank's own random stream differs by design


def _worker(rank: int, port: int, second_port: int, root, tmp) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ctx = distributed.from_environment()
    distributed.start(ctx, torch.device("cpu"))
    quiet = Reporter(quiet=True)
    data = prepare_data(root, options(tmp), quiet)
    straight = Trainer(data, options(tmp), tmp / "straight", quiet, ctx=ctx)
    straight.run()
    save_file(_method_state(straight), str(tmp / f"method-rank{rank}.safetensors"))
    with pytest.raises(Cancelled):  # rank 0's stop request reaches both at iteration 5
        Trainer(data, options(tmp), tmp / "resumed", quiet, ctx=ctx,
                should_stop=lambda: rank == 0).run()
    resumed = Trainer(data, options(tmp), tmp / "resumed", quiet, ctx=ctx)
    resumed.resume()
    resumed.run()
    supervised = options(tmp, method="supervised", iterations=4, log_every=1)
    train(root, supervised, tmp / "supervised-ddp", quiet)  # leaves the process group
    # a new process group on a new port (the last one's store may still hold its port), in
    # which rank 1 reads a copy of the dataset whose labelled_order differs
    os.environ["MASTER_PORT"] = str(second_port)
    with pytest.raises(ArcosegError) as refused:
        train(root if rank == 0 else tmp / "Reordered", supervised, tmp / "mismatch", quiet)
    (tmp / f"mismatch-rank{rank}.txt").write_text(str(refused.value))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    root = make_phantom_dataset(tmp / "Phantom", num_cases=5, shape_zyx=(6, 32, 32),
                                val_cases=1)
    options(tmp)  # settings are valid before spawning
    shutil.copytree(root, tmp / "Reordered")
    info = json.loads((root / "dataset.json").read_text())
    info["labelled_order"] = info["labelled_order"][::-1]
    (tmp / "Reordered" / "dataset.json").write_text(json.dumps(info))
    mp.spawn(_worker, args=(_free_port(), _free_port(), root, tmp), nprocs=WORLD, join=True)
    return root, tmp


def test_ranks_hold_the_same_teacher_memory_bank_and_queue(runs):
    _, tmp = runs
    states = [load_file(str(tmp / f"method-rank{r}.safetensors")) for r in range(WORLD)]
    assert states[0].keys() == states[1].keys()
    assert int(states[0]["bank.1.feats"].shape[0]) > 0
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_a_resumed_distributed_run_ends_where_an_uninterrupted_one_does(runs):
    _, tmp = runs
    a = load_file(str(tmp / "straight/training/checkpoint.safetensors"))
    b = load_file(str(tmp / "resumed/training/checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp / "straight/model.safetensors").is_file()  # rank 0 wrote the model


def _weights(folder) -> torch.Tensor:
    state = load_file(str(folder / "training/checkpoint.safetensors"))
    return torch.cat([v.flatten().float() for k, v in sorted(state.items())
                      if k.startswith("s.0.") and v.is_floating_point()])


def test_two_processes_match_one_with_the_same_global_batch(runs):
    root, tmp = runs
    torch.set_num_threads(1)
    single = {}
    for seed in (3, 4):
        out = tmp / f"supervised-single-{seed}"
        train(root, options(tmp, method="supervised", iterations=4, log_every=1, seed=seed),
              out, Reporter(quiet=True))
        single[seed] = _weights(out)
    start = _weights_at_init(root, tmp)
    ddp = _weights(tmp / "supervised-ddp")
    moved = (single[3] - start).norm()
    assert (ddp - single[3]).norm() < 0.1 * moved  # the same training, up to per-shard Dice/BN
    assert (single[4] - single[3]).norm() > 10 * (ddp - single[3]).norm()


def _weights_at_init(root, tmp) -> torch.Tensor:
    opts = options(tmp, method="supervised", iterations=4)
    trainer = Trainer(prepare_data(root, opts, Reporter(quiet=True)), opts, tmp / "init",
                      Reporter(quiet=True))
    return torch.cat([v.flatten().float() for k, v in sorted(trainer.model.state_dict().items())
                      if v.is_floating_point()])


def test_ranks_that_prepared_other_data_are_refused_on_every_rank(runs):
    """A hunter's finding: rank 1 reading a copy with another labelled_order trained in, exit 0,
    the model's record naming rank 0's cases only."""
    _, tmp = runs
    for rank in range(WORLD):
        assert (tmp / f"mismatch-rank{rank}.txt").read_text().startswith(
            "Rank(s) 1 prepared other data than rank 0")
    assert not (tmp / "mismatch" / "model.safetensors").exists()


def test_the_batch_must_split_evenly_over_the_processes(runs):
    root, tmp = runs
    opts = options(tmp, batch=3)
    data = prepare_data(root, opts, Reporter(quiet=True))
    with pytest.raises(ArcosegError, match="divisible by the number of processes"):
        distributed.ShardedBatches(Trainer(data, opts, tmp / "x", Reporter(quiet=True))
                                   .labelled_sampler, distributed.Distributed(0, 2, 0))


@pytest.mark.slow
def test_torchrun_launches_the_command_line(tmp_path):
    """`torchrun --nproc-per-node 2 -m arcoseg train ...` end to end (rank 0 writes the model)."""
    import subprocess
    import sys

    root = make_phantom_dataset(tmp_path / "Phantom", num_cases=4, shape_zyx=(6, 32, 32),
                                val_cases=1)
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "-m", "arcoseg", "train", str(root), "--out",
           str(out), "--dims", "2", "--patch", "32", "32", "--batch", "2", "--iterations", "4",
           "--method", "mean_teacher", "--labelled", "2", "--device", "cpu", "--threads", "1",
           "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.safetensors").is_file()
    records = (out / "training/metrics.jsonl").read_text().splitlines()
    assert len(records) == 4  # one log, written by rank 0 only


def test_leftover_rank_variables_without_torchrun_are_a_clear_error(monkeypatch):
    """The tester's finding 7: RANK / WORLD_SIZE left in a shell, no MASTER_ADDR: an 'Internal
    error ... please report this' (exit 1) instead of what to do."""
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ctx = distributed.from_environment()
    with pytest.raises(ArcosegError, match="not the rest of torchrun's environment.*unset RANK "
                                           "and WORLD_SIZE"):
        distributed.start(ctx, torch.device("cpu"))


def test_another_rank_going_away_is_told_apart_from_an_internal_error():
    """A hunter's finding: when one rank was killed, the others said 'Internal error … Please
    report this' (gloo's 'Connection closed by peer'); `train` now says a process stopped."""
    import torch.distributed as dist

    assert distributed.is_peer_failure(RuntimeError(
        "[../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
        "[127.0.0.1]:23456"))
    assert distributed.is_peer_failure(dist.DistBackendError("NCCL communicator was aborted"))
    assert not distributed.is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be "
                                                        "multiplied"))
