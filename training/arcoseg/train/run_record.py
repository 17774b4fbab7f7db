"""What a training run records about itself: the model's metadata (classes, plan, provenance),
the run's result as `train` reports it, and the device line of its log."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import torch

import arcoseg
from arcoseg.device import describe_device
from arcoseg.model_metadata import ModelMetadata, default_colors
from arcoseg.train.distributed import Distributed

if TYPE_CHECKING:
    from arcoseg.train.trainer import Trainer


def run_metadata(trainer: Trainer, **extra_provenance: Any) -> ModelMetadata:
    """model.json of the run now: network, classes (name, label value, colour), plan, and the
    provenance (method, options, iterations, best validation metrics, time, version, device)."""
    data, options = trainer.data, trainer.options
    colors = default_colors(len(data.class_names))
    return ModelMetadata(
        network=trainer.config.to_dict(),
        classes=[{"name": n, "value": v, "color": c} for n, v, c
                 in zip(data.class_names, data.class_values, colors)],
        plan=data.plan.to_dict(),
        provenance={
            **data.provenance, "method": options.method,
            "sampler": options.sampler if options.method == "arco" else None,
            "iterations": trainer.state.iteration, "options": options.to_dict(),
            "validation": trainer.state.best_metrics,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "arcoseg_version": arcoseg.__version__, "device": str(trainer.device),
            **extra_provenance})


def run_result(trainer: Trainer) -> dict[str, Any]:
    """The result `arcoseg train` reports: model folder, iterations, best iteration (the final
    one without validation: its weights are the kept ones), validation metrics, seconds and
    seconds per iteration, where the metrics log and the curves are."""
    state, out_dir = trainer.state, trainer.out_dir
    return {"model": str(out_dir), "iterations": state.iteration,
            "best_iteration": state.best_iteration if trainer.data.val else state.iteration,
            "validation": state.best_metrics,
            "seconds": round(state.seconds, 2),
            "seconds_per_iteration": round(state.seconds / max(1, state.iteration), 4),
            "metrics_log": str(trainer.log.path),
            "curves": str(out_dir / "training" / "curves.png")}


def device_line(device: torch.device, ctx: Distributed) -> str:
    """'Device: NAME (DEVICE), torch VERSION[, N processes (DDP)]', with a warning on the CPU."""
    info = describe_device(device)
    line = f"Device: {info['name']} ({info['device']}), torch {info['torch']}"
    if ctx.enabled:
        line += f", {ctx.world_size} processes (DDP)"
    return line + (" — WARNING: running on the CPU, this will be slow" if info["is_cpu"] else "")
