"""A training run's checkpoint: what `Trainer` saves to continue exactly where it stopped, and
`--resume` restoring it (the pickle-free file format is `train.state`'s).

A checkpoint holds the student, optimiser, method (teacher, memory bank, queue, generator),
gradient scaler, samplers, torch and CUDA random states, every rank's method generator, the
loop's `RunState`, the options and the network configuration. A resume must use the same
options (except those in RESUMABLE_CHANGES) and the same number of processes; it trains the
checkpoint's network (`checkpoint_network`), not the one a new run would build today.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from filelock import FileLock, Timeout

from arcoseg.constants import METADATA_FILE, WEIGHTS_FILE
from arcoseg.errors import ArcosegError
from arcoseg.networks.model import NetworkConfig
from arcoseg.train import distributed
from arcoseg.train.run_data import data_identity
from arcoseg.train.state import checkpoint_entry, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from arcoseg.train.trainer import Trainer

CHECKPOINT_STEM = "training/checkpoint"
# held by the run writing the folder (hidden: never exported with the history, registry.archive)
RUN_LOCK = "training/.run.lock"
# options that may change between an interrupted run and its resume (log_every follows
# --iterations in `arcoseg train`; it changes when values are read, not what is trained; the
# cache only holds what the data gives again)
RESUMABLE_CHANGES = ("iterations", "device", "amp", "channels_last", "log_every", "cache_dir")
# Checkpoints from before the network was recorded in them trained every representation head
# at 1/2 of the input (the default of new 2D heads is 1/4 since; networks.model)
LEGACY_HEAD_STRIDE = 2
_CHECKPOINT_KEYS = ("model", "optimizer", "method", "scaler", "labelled_sampler",
                    "torch_rng", "cuda_rng", "state", "options")


@dataclass
class RunState:
    """The loop's progress, saved in checkpoints."""

    iteration: int = 0
    best_score: float = -1.0
    best_iteration: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def save_run(trainer: Trainer) -> None:
    """Write `trainer`'s checkpoint (rank 0 writes; every rank must call this, to hand over its
    own random state)."""
    generators = _generator_states(trainer)
    if not trainer.ctx.is_main:
        return
    save_checkpoint(trainer.out_dir / CHECKPOINT_STEM, {
        "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
        "method": trainer.method.state_dict(), "scaler": trainer.scaler.state_dict(),
        "labelled_sampler": trainer.labelled_sampler.state_dict(),
        "unlabelled_sampler": (trainer.unlabelled_sampler.state_dict()
                               if trainer.unlabelled_sampler else None),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "rank_generators": generators, "world_size": trainer.ctx.world_size,
        "state": vars(trainer.state), "options": trainer.options.to_dict(),
        "network": trainer.config.to_dict(), "data": data_identity(trainer.data)})


def check_run_folder(out_dir: Path, resume: bool) -> None:
    """ArcosegError unless a run may write into `out_dir`: a new one not over an interrupted
    run (continue it with --resume) nor over a model (a registered version, a trained model:
    its weights would be replaced without a word); a resumed one only where a checkpoint is."""
    has_run = (out_dir / f"{CHECKPOINT_STEM}.json").exists()
    found = [name for name in (METADATA_FILE, WEIGHTS_FILE) if (out_dir / name).exists()]
    if resume and not has_run and found:
        raise ArcosegError(f"{out_dir} holds a model but no training checkpoint to continue, "
                           "so --resume cannot go on from it. Train into another --out.")
    if resume:
        return
    if has_run:
        raise ArcosegError(f"{out_dir} already holds a training run. Continue it with --resume, "
                           "or choose another --out.")
    if found:
        raise ArcosegError(f"{out_dir} already holds a model ({', '.join(found)}); training "
                           "would replace it. Choose another --out, or delete that model first.")


@contextmanager
def run_folder_lock(out_dir: Path, resume: bool) -> Iterator[None]:
    """Hold `out_dir` for one training run: `check_run_folder`, then a lock on the folder for
    the run's length, then the same check again inside it (a run that started meanwhile).

    Raises ArcosegError at once when another run (or a --resume) is writing there: two runs in
    one folder both exited 0 and left one's weights with the other's log and options."""
    check_run_folder(out_dir, resume)  # before anything is created there
    path = out_dir / RUN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ArcosegError(f"{out_dir} is being written by another training run (it holds "
                           f"{path}). Wait for that run to end or stop it, or choose another "
                           "--out.") from None
    try:
        check_run_folder(out_dir, resume)
        yield
    finally:
        lock.release()


def checkpoint_network(out_dir: Path, current: NetworkConfig) -> NetworkConfig:
    """The network of the interrupted run in `out_dir`: its checkpoint's record; for a
    checkpoint written before that record, `current` (what this version would build for the
    same options) with the head stride every run had then. `current` if there is no readable
    checkpoint (`resume_run` then says what is wrong)."""
    stem = out_dir / CHECKPOINT_STEM
    saved = checkpoint_entry(stem, "network")
    if saved is not None:
        return NetworkConfig.from_dict(saved)
    if current.head_dim is None or checkpoint_entry(stem, "options") is None:
        return current
    return dataclasses.replace(current, head_stride=LEGACY_HEAD_STRIDE)


def _generator_states(trainer: Trainer) -> list[torch.Tensor]:
    generator = getattr(trainer.method, "generator", None)
    if generator is None:
        return []
    return distributed.gather_states(trainer.ctx, generator.get_state(), trainer.device)


def resume_run(trainer: Trainer) -> None:
    """Load `trainer`'s last checkpoint into it. Raises ArcosegError (with what to do) when
    there is none, it is damaged, or it was written with other options or another number of
    processes."""
    ckpt = load_checkpoint(trainer.out_dir / CHECKPOINT_STEM)
    missing = [key for key in _CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise ArcosegError(f"The checkpoint in {trainer.out_dir / 'training'} is incomplete "
                           f"(no {', '.join(missing)}): train again into another --out.")
    _check_compatible(trainer, ckpt)
    trainer.model.load_state_dict(ckpt["model"])
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.method.load_state_dict(ckpt["method"])
    if ckpt.get("rank_generators"):
        trainer.method.generator.set_state(ckpt["rank_generators"][trainer.ctx.rank].cpu())
    trainer.scaler.load_state_dict(ckpt["scaler"])
    trainer.labelled_sampler.load_state_dict(ckpt["labelled_sampler"])
    if trainer.unlabelled_sampler is not None:
        trainer.unlabelled_sampler.load_state_dict(ckpt["unlabelled_sampler"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    trainer.state = RunState(**ckpt["state"])
    if trainer.ctx.is_main:
        trainer.log.truncate_after(trainer.state.iteration)
    trainer.reporter.log(f"Resuming at iteration {trainer.state.iteration}")


def check_resume_options(out_dir: Path, options: dict[str, Any]) -> None:
    """Refuse to resume the run in `out_dir` with options (`TrainOptions.to_dict()`) other than
    its checkpoint's, from the checkpoint's JSON alone: before any data is read (a cold cache
    took minutes of preprocessing before this refusal). Nothing to compare: nothing raised."""
    saved = checkpoint_entry(out_dir / CHECKPOINT_STEM, "options")
    if isinstance(saved, dict):
        _check_options(out_dir, saved, options)


def _check_options(out_dir: Path, saved: dict[str, Any], options: dict[str, Any]) -> None:
    """ArcosegError naming the options (but RESUMABLE_CHANGES) that differ from `saved`."""
    saved = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
    now = {k: v for k, v in options.items() if k not in RESUMABLE_CHANGES}
    if saved != now:
        changed = sorted(k for k in now if saved.get(k) != now[k])
        raise ArcosegError(f"Cannot resume {out_dir}: the options differ from the interrupted "
                           f"run ({', '.join(changed)}). Rerun with the same options.")


def _check_compatible(trainer: Trainer, ckpt: dict) -> None:
    """Refuse a checkpoint of other options, other data or another number of processes."""
    _check_options(trainer.out_dir, ckpt["options"], trainer.options.to_dict())
    saved_data, data = ckpt.get("data") or {}, data_identity(trainer.data)  # {}: an older one
    changed = ", ".join(f"{key} {_shown(saved_data[key])} then, {_shown(data[key])} now"
                        for key in data if key in saved_data and saved_data[key] != data[key])
    if changed:
        raise ArcosegError(f"Cannot resume {trainer.out_dir}: it was trained on other data "
                           f"({changed}). Resume with the dataset it started with, or train "
                           "into another --out.")
    world = ckpt.get("world_size", 1)
    if world != trainer.ctx.world_size:
        raise ArcosegError(f"Cannot resume {trainer.out_dir}: it was trained by {world} "
                           f"process(es), this run has {trainer.ctx.world_size}. Resume with "
                           f"torchrun --nproc-per-node {world} (or without torchrun for 1).")


def _shown(value: Any) -> str:
    """A recorded value for a message: lists of case ids cut after 6."""
    if isinstance(value, list) and len(value) > 6:
        return f"{value[:6]} and {len(value) - 6} more"
    return str(value)
