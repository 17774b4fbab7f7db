"""Multi-process training with torch.distributed (DDP), launched by torchrun.

    torchrun --nproc-per-node 2 -m arcoseg train DATASET --out MODEL --method arco ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `from_environment`
reads them and `start` joins the process group (NCCL on CUDA, one GPU per process = LOCAL_RANK;
gloo on the CPU). Without them (a plain `arcoseg train`) everything here is a no-op.

What the trainer does with it (training/ARCHITECTURE.md, "Distributed training"):
- `--batch` / `--unlabelled-batch` stay the *global* batch: every rank draws the same global
  batch from the same seed and keeps its contiguous shard (`ShardedBatches`), so a run on N
  processes sees the same images as one process, and the paper's settings mean the same thing
  on any number of GPUs;
- the student is wrapped in `DistributedDataParallel` (gradients averaged over ranks);
- the students' BatchNorm running statistics are averaged over ranks after every optimiser step
  (`average_buffers`), so the EMA teacher, which follows the student's weights and buffers, is
  the same on every rank; with `--sync-bn` (CUDA only: torch's SyncBatchNorm has no CPU kernel)
  the training forward normalises by the statistics of the global batch;
- memory-bank negatives and queue embeddings are gathered from all ranks (`gather_rows`), so
  every rank holds the same banks;
- only rank 0 writes checkpoints, the model, logs and progress; decisions that end the loop
  (time budget, early stop, a stop request) are taken by rank 0 and broadcast (`agree`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from arcoseg.errors import ArcosegError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> Distributed:
    """The torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as err:
        raise ArcosegError(f"Bad torchrun environment ({err}); launch with torchrun or unset "
                           "RANK / WORLD_SIZE / LOCAL_RANK.") from None
    if world < 1 or not 0 <= rank < world:
        raise ArcosegError(f"Bad torchrun environment: RANK={rank}, WORLD_SIZE={world}.")
    return Distributed(rank, world, local)


def start(ctx: Distributed, device: torch.device) -> torch.device:
    """Join the process group (if distributed); returns this rank's device (cuda:LOCAL_RANK)."""
    if not ctx.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ArcosegError(f"Distributed training runs on CUDA GPUs or the CPU, not {device}.")
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    rank=ctx.rank, world_size=ctx.world_size,
                                    **({"device_id": device} if device.type == "cuda" else {}))
        except ValueError as err:  # RANK / WORLD_SIZE set, but no MASTER_ADDR / MASTER_PORT
            raise ArcosegError(f"RANK and WORLD_SIZE are set, but not the rest of torchrun's "
                               f"environment ({err}). Start distributed training with torchrun "
                               "--nproc-per-node N -m arcoseg train …, or unset RANK and "
                               "WORLD_SIZE to train in one process.") from None
    return device


def stop(ctx: Distributed) -> None:
    """Leave the process group (if this process joined one)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Distributed) -> None:
    if ctx.enabled:
        dist.barrier()


def wait_for_main(ctx: Distributed) -> None:
    """The other ranks' `barrier` while rank 0 prepares the data: if rank 0 stops there (a bad
    dataset), its own message says why, and these ranks end with a short error instead of the
    backend's 'Connection reset by peer' traceback as an internal error."""
    try:
        barrier(ctx)
    except RuntimeError:  # torch.distributed.DistBackendError is one
        raise ArcosegError(f"Rank {ctx.rank}: rank 0 stopped while preparing the data; its "
                           "message says why.") from None


def check_same_data(ctx: Distributed, identity: dict[str, Any], device: torch.device) -> None:
    """ArcosegError on every rank unless every rank prepared the same data (`identity`: case
    ids, classes, plan): on several machines each reads its own copy of the dataset, and one
    that differs trained in silently, the model's record naming rank 0's data only."""
    if not ctx.enabled:
        return
    text = json.dumps(_rounded(identity), sort_keys=True, default=str)
    digest = torch.tensor([int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)],
                          dtype=torch.long, device=device)
    digests = [torch.empty_like(digest) for _ in range(ctx.world_size)]
    dist.all_gather(digests, digest)
    other = [rank for rank, d in enumerate(digests) if int(d) != int(digests[0])]
    if other:
        raise ArcosegError(f"Rank(s) {', '.join(map(str, other))} prepared other data than "
                           "rank 0 (cases, classes or preprocessing plan): every process must "
                           "read the same dataset (on several machines, identical copies).")


def is_peer_failure(err: BaseException) -> bool:
    """Whether `err` is the communication backend saying another rank went away (gloo's
    'Connection closed by peer', a DistBackendError): the rank that died reports its own cause;
    the others are no internal error."""
    kinds = tuple(k for k in (getattr(dist, "DistBackendError", None),
                              getattr(dist, "DistNetworkError", None)) if k is not None)
    text = str(err)
    return isinstance(err, kinds) or any(s in text for s in (
        "Connection closed by peer", "Connection reset by peer", "Broken pipe"))


def _rounded(value: Any) -> Any:
    """`value` with every float to 6 significant digits: CT statistics computed by another
    numpy or CPU may differ in the last digits, which is no other data."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """(R, n, ...) on every rank -> (R, world * n, ...): the rows of all ranks, rank by rank.

    Fixed shapes, so no host synchronisation (all_gather_into_tensor on NCCL)."""
    world = dist.get_world_size()
    out = tensor.new_empty((world * tensor.shape[0], *tensor.shape[1:]))
    # all_gather_single is the newer name (torch >= 2.12) of all_gather_into_tensor
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, tensor.contiguous())
    out = out.view(world, *tensor.shape).movedim(0, 1)
    return out.reshape(tensor.shape[0], world * tensor.shape[1], *tensor.shape[2:])


def average_buffers(module: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over all ranks."""
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1) for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for buffer, value in zip(buffers, flat.split([b.numel() for b in buffers])):
        buffer.copy_(value.view_as(buffer))


def agree(ctx: Distributed, values: list[int], device: torch.device) -> list[int]:
    """Rank 0's `values` on every rank (one host synchronisation; call every few steps)."""
    if not ctx.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.long, device=device)
    dist.broadcast(tensor, 0)
    return [int(v) for v in tensor.tolist()]


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The average of `tensor` over all ranks (for logging)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / dist.get_world_size()


def gather_states(ctx: Distributed, state: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """Every rank's copy of a same-sized byte state (e.g. a generator's), rank by rank."""
    if not ctx.enabled:
        return [state]
    return list(gather_rows(state.to(device)[None, None])[0].cpu().unbind())


def wrap(module: nn.Module, device: torch.device, find_unused: bool) -> nn.Module:
    """`module` in DistributedDataParallel, without syncing buffers at each forward (the
    trainer averages them after each step instead, `average_buffers`)."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in params
                      else {"broadcast_buffers": False})  # the name before torch 2.12
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused, **no_buffer_sync)


def silence(reporter: Any) -> None:
    """Mute a reporter's progress, log and result on ranks other than 0 (torchrun would
    otherwise interleave one copy per process); errors still show, with their rank's output."""
    for name in ("progress", "log", "result"):
        setattr(reporter, name, lambda *args, **fields: None)


class ShardedBatches:
    """Rank `rank`'s contiguous shard of the global batches a sampler draws (same seed on every
    rank, so the shards partition the batch a single process would draw)."""

    def __init__(self, sampler: Any, ctx: Distributed) -> None:
        if sampler.batch_size % ctx.world_size:
            raise ArcosegError(f"The batch ({sampler.batch_size}) must be divisible by the "
                               f"number of processes ({ctx.world_size}): each takes an equal "
                               "shard of it. Change --batch / --unlabelled-batch.")
        self.sampler, self.ctx = sampler, ctx
        self.share = sampler.batch_size // ctx.world_size

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.sampler.sample()
        shard = slice(self.ctx.rank * self.share, (self.ctx.rank + 1) * self.share)
        return images[shard], labels[shard]

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


class StudentForward(nn.Module):
    """The student as DDP sees it: one `forward` that returns logits, or (logits, embeddings)
    with `embeddings=True` (DDP only syncs gradients of passes through its own forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, embeddings: bool = False) -> Any:
        return self.model.forward_train(x) if embeddings else self.model(x)


class DistributedStudent:
    """What the methods call (`student(x)`, `student.forward_train(x)`), through DDP."""

    def __init__(self, ddp: nn.Module) -> None:
        self.ddp = ddp

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.ddp(x)

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.ddp(x, embeddings=True)
