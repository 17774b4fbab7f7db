"""`arcoseg train`'s entry point: check the output folder and hold it (one run at a time), start
the process group under torchrun, prepare the data (rank 0 fills the preprocessing cache first), train or resume."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch

from arcoseg.device import resolve_device
from arcoseg.errors import ArcosegError
from arcoseg.progress import Reporter
from arcoseg.train import distributed
from arcoseg.train.options import TrainOptions
from arcoseg.train.resume import (check_resume_options, check_run_folder, checkpoint_network,
                                  run_folder_lock)
from arcoseg.train.run_data import data_identity, prepare_data
from arcoseg.train.trainer import Trainer, new_network


def train(dataset_root: Path, options: TrainOptions, out_dir: Path, reporter: Reporter,
          resume: bool = False, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Train a model on a dataset folder into `out_dir` (model.safetensors + model.json).

    Under torchrun (RANK / WORLD_SIZE set) every process calls this; they train one model
    data-parallel, rank 0 writes it (`train.distributed`)."""
    device = resolve_device(options.device)  # fail fast, before any data is read
    check_run_folder(out_dir, resume)  # on every rank: one refusal everywhere
    if resume:  # from the checkpoint's JSON: before any data is read
        check_resume_options(out_dir, options.to_dict())
    ctx = distributed.from_environment()
    with run_folder_lock(out_dir, resume) if ctx.is_main else nullcontext():  # rank 0 writes
        return _train(dataset_root, options, out_dir, reporter, resume, should_stop, device, ctx)


def _train(dataset_root: Path, options: TrainOptions, out_dir: Path, reporter: Reporter,
           resume: bool, should_stop: Callable[[], bool], device: torch.device,
           ctx: distributed.Distributed) -> dict[str, Any]:
    distributed.start(ctx, device)
    try:
        if not ctx.is_main:  # rank 0 fills the preprocessing cache first, the others read it
            distributed.wait_for_main(ctx)
        data = prepare_data(dataset_root, options,
                            reporter if ctx.is_main else Reporter(quiet=True), should_stop)
        if ctx.is_main:
            distributed.barrier(ctx)
        distributed.check_same_data(ctx, {**data_identity(data), "plan": data.plan.to_dict()},
                                    device)
        network = (checkpoint_network(out_dir, new_network(data, options)) if resume
                   else None)  # a resumed run keeps the network it started with
        trainer = Trainer(data, options, out_dir, reporter, should_stop, network=network,
                          ctx=ctx)
        if resume:
            trainer.resume()
        return trainer.run()
    except RuntimeError as err:
        if ctx.enabled and distributed.is_peer_failure(err):  # not this rank's own error
            raise ArcosegError(f"Rank {ctx.rank}: another process of the run stopped (killed, "
                               "out of memory, or its own error: its message says why). "
                               "Continue from the last checkpoint with --resume.") from None
        raise
    finally:
        distributed.stop(ctx)
