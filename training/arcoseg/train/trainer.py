"""The training loop: data, model, method, SGD with poly decay, validation, checkpoints, resume.

One iteration (`_step`) never waits for the GPU: the batch is copied asynchronously, every
loss and diagnostic stays a device tensor, and the loop reads values on the host only every
`log_every` iterations (one transfer for the whole log record) and every BUDGET_WINDOW
iterations for early stopping. Under torchrun the run is data-parallel (`train.distributed`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from arcoseg.data.preprocess import PreprocessedCase
from arcoseg.data.sampling import PatchSampler, SliceSampler
from arcoseg.device import autocast, resolve_device
from arcoseg.errors import ArcosegError, Cancelled
from arcoseg.evaluation.plots import plot_training_curves
from arcoseg.fileutil import write_text_atomic
from arcoseg.model_metadata import ModelMetadata
from arcoseg.modelfile import save_model
from arcoseg.networks.model import (NetworkConfig, SegmentationModel, build_model,
                                    load_backbone_weights, with_default_head)
from arcoseg.progress import Reporter
from arcoseg.train import distributed
from arcoseg.train.convergence import Convergence
from arcoseg.train.distributed import (Distributed, DistributedStudent, ShardedBatches,
                                       StudentForward)
from arcoseg.train.methods import Method, make_method
from arcoseg.train.metrics_log import MetricsLog
from arcoseg.train.optimizer import make_optimizer
from arcoseg.train.options import TrainOptions
from arcoseg.train.run_data import RunData, extra_unlabelled, prepare_data, without_label
from arcoseg.train.precision import memory_format, to_memory_format, uses_grad_scaler
from arcoseg.train.run_record import device_line, run_metadata, run_result
from arcoseg.train.resume import RunState, resume_run, save_run
from arcoseg.train.validation import validate

__all__ = ["Convergence", "RunData", "Trainer", "extra_unlabelled", "new_network", "prepare_data",
           "without_label"]
BUDGET_WINDOW = 5  # iterations between re-estimates of how many fit the time budget


def _sampler(cases: list[PreprocessedCase], options: TrainOptions, batch: int, seed: int,
             ctx: Distributed, jitter: float = 0.0):
    cls = SliceSampler if options.dims == 2 else PatchSampler
    sampler = cls(cases, tuple(options.patch), batch, seed=seed, jitter=jitter)
    return ShardedBatches(sampler, ctx) if ctx.enabled else sampler


class Trainer:
    """One training run writing a model folder; `run()` trains (or resumes) to the end.

    `ctx`: this process's rank under torchrun (default: a single process). Every rank builds a
    Trainer; only rank 0 writes files and reports (see `train.distributed`)."""

    def __init__(self, data: RunData, options: TrainOptions, out_dir: Path, reporter: Reporter,
                 should_stop: Callable[[], bool] = lambda: False,
                 init_weights: dict[str, torch.Tensor] | None = None,
                 network: NetworkConfig | None = None, ctx: Distributed | None = None,
                 hooks: Sequence[Callable[[Trainer], None]] = ()) -> None:
        self.ctx = ctx or Distributed()
        # called every BUDGET_WINDOW iterations, after the budget fit and before the early-stop
        # rule; they may score the model and change the labelled data (one process only)
        self.hooks = list(hooks)
        self.data, self.options, self.out_dir = data, options, out_dir
        self.reporter = reporter if self.ctx.is_main else Reporter(quiet=True)
        self.should_stop = should_stop
        self.device = distributed.start(self.ctx, resolve_device(options.device))
        torch.manual_seed(options.seed)  # the same initial weights on every rank
        config = network or new_network(data, options)
        self.config = with_default_head(config) if options.method == "arco" else config
        self.model: SegmentationModel = build_model(self.config).to(self.device)
        if init_weights is not None:
            load_backbone_weights(self.model, init_weights)
        self.memory_format = memory_format(options.dims, options.channels_last, self.device)
        to_memory_format(self.model, self.memory_format)
        if options.sync_bn:
            self._convert_sync_bn()
        share = distributed.gather_rows if self.ctx.enabled else None
        self.method: Method = make_method(options, self.model, len(data.class_names), self.device,
                                          rank=self.ctx.rank, share=share)
        self.student = self._student()
        self.optimizer = make_optimizer(options.optimizer, self.model.parameters(), options.lr)
        self.scaler = torch.amp.GradScaler("cuda",
                                           enabled=uses_grad_scaler(self.device, options.amp,
                                                                    options.dims))
        # the teacher labels the unlabelled batches unjittered; the method jitters its own view
        self.labelled_sampler = _sampler(data.labelled, options, options.batch, options.seed,
                                         self.ctx, options.jitter)
        self.unlabelled_sampler = (_sampler(data.unlabelled, options,
                                            options.unlabelled_batch or options.batch,
                                            options.seed + 1, self.ctx)
                                   if data.unlabelled and options.semi_supervised else None)
        self.state = RunState()
        self.log = MetricsLog(out_dir / "training" / "metrics.jsonl")
        # never converged inside the supervised warm-up: the semi-supervised part must run
        self.convergence = Convergence(min_fraction=0.3 + options.warmup_fraction,
                                       min_iterations=options.warmup)
        self._pending_losses: list[torch.Tensor] = []  # read every BUDGET_WINDOW iterations
        self.max_iterations = options.iterations
        self._budget_mark = (0, 0.0)  # (iteration, seconds) of the last budget estimate

    def _convert_sync_bn(self) -> None:
        if not (self.ctx.enabled and self.device.type == "cuda"):
            raise ArcosegError("--sync-bn needs a distributed run on CUDA GPUs (torchrun "
                               "--nproc-per-node N ...): torch's SyncBatchNorm has no CPU "
                               "kernel and one process has nothing to synchronise.")
        self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)

    def _student(self) -> Any:
        """What the method calls: the model, or under torchrun the model through DDP."""
        if not self.ctx.enabled:
            return self.model
        opts = self.options
        always_embeds = (opts.method == "arco" and opts.lambda_c + opts.lambda_nn > 0
                         and not opts.warmup and not opts.warmup_fraction)
        return DistributedStudent(distributed.wrap(
            StudentForward(self.model), self.device,
            find_unused=self.model.head is not None and not always_embeds))

    # -- checkpoints (train.resume) -----------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Everything needed to continue exactly where the run is now (rank 0 writes it; every
        rank must call this, to hand over its own random state)."""
        save_run(self)

    def resume(self) -> None:
        """Load the run's last checkpoint; refuse one written with different options or by
        another number of processes."""
        resume_run(self)

    def use_labelled(self, cases: list[PreprocessedCase]) -> None:
        """Train on `cases` as the labelled data from the next iteration on (a new sampler;
        e.g. Adapt's held-out slice joining the training labels)."""
        self.data.labelled = cases
        opts = self.options
        self.labelled_sampler = _sampler(cases, opts, opts.batch, opts.seed + 3, self.ctx,
                                         opts.jitter)

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to `options.iterations`, validating and checkpointing on the way."""
        opts = self.options
        if self.ctx.is_main:
            write_text_atomic(self.out_dir / "training" / "options.json",
                              json.dumps(opts.to_dict(), indent=2))
        self.reporter.log(device_line(self.device, self.ctx))
        stop = False
        while self.state.iteration < opts.iterations:
            if stop or (not self.ctx.enabled and self.should_stop()):
                if self.state.iteration == 0:  # nothing to keep: the folder stays free
                    raise Cancelled("Training stopped before its first iteration; nothing was "
                                    "saved.")
                self.save_checkpoint()
                raise Cancelled(f"Training stopped at iteration {self.state.iteration}; the "
                                f"checkpoint is saved. Continue with --resume --out {self.out_dir}.")
            self._step()
            stop = self._fit_budget()
        self.reporter.progress(self.state.iteration, self.state.iteration, "training")
        self.save_checkpoint()
        if self.ctx.is_main:
            if not self.data.val:
                self._save_model()
            plot_training_curves(self.log.records(), self.out_dir / "training" / "curves.png")
        return self._result()

    def _batch(self, sampler: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch on the device, copied without waiting (pinned memory on CUDA)."""
        images, labels = sampler.sample()
        if self.device.type == "cuda":
            images, labels = images.pin_memory(), labels.pin_memory()
        images = images.to(self.device, non_blocking=True)
        return (images.contiguous(memory_format=self.memory_format),
                labels.to(self.device, non_blocking=True))

    def _step(self) -> None:
        opts, it = self.options, self.state.iteration
        start = time.perf_counter()
        lr = opts.lr * (1 - it / opts.iterations) ** 0.9
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        labelled = self._batch(self.labelled_sampler)
        unlabelled = None  # none sampled while the method does not use it (warm-up)
        if self.unlabelled_sampler and self.method.uses_unlabelled(it, opts.iterations):
            unlabelled = self._batch(self.unlabelled_sampler)
        with autocast(self.device, opts.amp, opts.dims):
            loss, terms = self.method.training_step(self.student, labelled, unlabelled,
                                                    it, opts.iterations)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ctx.enabled:
            distributed.average_buffers(self.model)  # the same teacher on every rank
        self.method.after_optimizer_step(self.model)
        self.state.iteration = it = it + 1
        self.state.seconds += time.perf_counter() - start
        if self.options.early_stop:
            self._pending_losses.append(terms.get("loss_sup", loss).detach())
        self._after_step(it, loss, terms, lr, time.perf_counter() - start)

    def _fit_budget(self) -> bool:
        """Every BUDGET_WINDOW iterations: fit the schedule to `budget_seconds` (re-estimated
        from the recent speed: machines are noisy), end it early once the supervised loss stops
        improving (`early_stop`), and, under torchrun, take rank 0's decisions (also whether to
        stop on request) on every rank. Returns whether to stop now."""
        opts, it = self.options, self.state.iteration
        if it % BUDGET_WINDOW:
            return False
        if opts.budget_seconds:
            recent = (self.state.seconds - self._budget_mark[1]) / (it - self._budget_mark[0])
            self._budget_mark = (it, self.state.seconds)
            left = max(0.0, opts.budget_seconds - self.state.seconds)
            # never past max_iterations (the run asked for), at least one more while below it
            opts.iterations = min(self.max_iterations, max(it + 1, it + int(left / recent)))
            if left <= 0:
                opts.iterations = it
        self._read_terms({})  # the early-stop losses not yet read with a log record
        for hook in self.hooks:
            hook(self)
        if opts.early_stop and self.convergence.converged(it, opts.iterations):
            self.reporter.log(f"Converged at iteration {it}")
            opts.iterations = it
        if not self.ctx.enabled:
            return False
        opts.iterations, stop = distributed.agree(
            self.ctx, [opts.iterations, int(self.should_stop())], self.device)
        return bool(stop)

    def _after_step(self, it: int, loss: torch.Tensor, terms: dict[str, Any], lr: float,
                    seconds: float) -> None:
        opts, last = self.options, it == self.options.iterations
        record: dict[str, Any] = {}
        if it % opts.log_every == 0 or last:
            record = {"iteration": it, "lr": lr, "seconds_per_iteration": seconds,
                      **self._read_terms({"loss": loss, **terms})}
        if self.ctx.is_main and self.data.val and (it % opts.val_every == 0 or last):
            record = {"iteration": it, **record, **self._validate(it)}
        if record and self.ctx.is_main:
            self.log.append(record)
            shown = {k: record[k] for k in ("loss", "val_dice") if k in record}
            # of the step just taken (index it - 1): "supervised" in a warm-up or a supervised
            # method, whose iterations are several times cheaper (adapt.pace)
            used = self.method.uses_unlabelled(it - 1, opts.iterations)
            shown["phase"] = "semi-supervised" if used else "supervised"
            self.reporter.progress(it, opts.iterations, "training", **shown)
        if it % opts.checkpoint_every == 0 and not last:
            self.save_checkpoint()

    def _read_terms(self, terms: dict[str, Any]) -> dict[str, float]:
        """The loss terms as floats, named for the log, and the pending early-stop losses into
        `convergence`: everything comes to the host in one transfer (terms averaged over the
        ranks under torchrun); nothing at all when there is nothing to read."""
        tensors = {k: v for k, v in terms.items() if isinstance(v, torch.Tensor)}
        parts = []
        if tensors:
            stacked = torch.stack([v.detach().float().reshape(()) for v in tensors.values()])
            parts.append(distributed.mean_over_ranks(stacked))
        if self._pending_losses:
            parts.append(torch.stack(self._pending_losses).float())
        values = torch.cat(parts).tolist() if parts else []
        for loss in values[len(tensors):]:
            self.convergence.add(loss)
        self._pending_losses.clear()
        read = dict(zip(tensors, values))
        return {self._term_name(k): float(read.get(k, v)) for k, v in terms.items()}

    def _term_name(self, key: str) -> str:
        """'anchors/2' → 'anchors/LV': per-class diagnostics are logged by class name."""
        prefix, _, index = key.partition("/")
        return f"{prefix}/{self.data.class_names[int(index)]}" if index.isdigit() else key

    def _validate(self, it: int) -> dict[str, float]:
        metrics = validate(self.method.eval_model(), self.data.val, self.data.plan,
                           self.data.class_names, self.device)
        self.convergence.add_score(metrics["val_dice"])  # no early stop while it improves
        if metrics["val_dice"] > self.state.best_score:
            self.state.best_score, self.state.best_iteration = metrics["val_dice"], it
            self.state.best_metrics = metrics
            self._save_model()
        self.reporter.log(f"iteration {it}: validation Dice {metrics['val_dice']:.4f} "
                          f"(best {self.state.best_score:.4f} at {self.state.best_iteration})")
        return metrics

    def _save_model(self) -> None:
        save_model(self.out_dir, self.method.eval_model(), self.metadata())

    def metadata(self, **extra_provenance: Any) -> ModelMetadata:
        """Model metadata of the current run (classes, plan, provenance)."""
        return run_metadata(self, **extra_provenance)

    def _result(self) -> dict[str, Any]:
        return run_result(self)


def new_network(data: RunData, options: TrainOptions,
                head_stride: int | None = None) -> NetworkConfig:
    """The network a new run trains: the architecture of `options.dims`, the data's input
    channels and classes, and for ARCO a representation head (`with_default_head`)."""
    config = NetworkConfig(arch="unet2d" if options.dims == 2 else "vnet3d",
                           in_channels=data.plan.input_channels(data.num_channels),
                           num_classes=len(data.class_names))
    return with_default_head(config, head_stride) if options.method == "arco" else config
