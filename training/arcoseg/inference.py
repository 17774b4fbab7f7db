"""Segmentation of whole volumes: 2D models slice by slice, 3D models by sliding windows.

Prediction runs on the model's preprocessed grid (target spacing, normalised intensities); the
class probabilities are resampled back to the input grid before the argmax, so the written label
map has exactly the input's size, spacing, origin and direction.

Memory (`training/benchmarks/segment_memory.py`): the input images are released once
preprocessed (`segment_file`); on the model's own grid with no probability map asked for, a 2D
model's argmax is taken `batch_size` slices at a time (no probabilities are stored); otherwise
probabilities are kept in half precision, resampled one class at a time and the argmax is
streamed over the classes, so no (K, z, y, x) float32 array and no int64 argmax exists. Labels
are the argmax of the float16 probabilities on the input grid: they equal a float32 argmax
except where two classes' probabilities are within half-precision rounding (about 1e-3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference

from arcoseg.data.orientation import array_from_slicing_axis, to_slicing_axis
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import preprocess_image, resample_to_reference
from arcoseg.device import autocast
from arcoseg.io.geometry import Grid, check_format_holds, grid_difference
from arcoseg.io.image_files import input_dimension, like_input
from arcoseg.io.images import array_to_image, pending_images, read_image
from arcoseg.io.segnrrd import SUFFIX as SEG_NRRD
from arcoseg.io.segnrrd import write_segmentation
from arcoseg.model_metadata import ModelMetadata
from arcoseg.networks.fused import inference_network
from arcoseg.networks.model import SegmentationModel

Progress = Callable[[int, int], None]  # (units done, total units): slices (2D) or windows (3D)
Network = Callable[[torch.Tensor], torch.Tensor]  # (B, C, *spatial) -> logits (B, K, *spatial)


@torch.no_grad()
def predict_probabilities(model: SegmentationModel, image: np.ndarray, plan: Plan,
                          device: torch.device, batch_size: int = 8, overlap: float = 0.25,
                          amp: bool = True, dtype: torch.dtype = torch.float32,
                          progress: Progress | None = None) -> torch.Tensor:
    """Softmax probabilities (K, z, y, x) in `dtype` on the CPU for a preprocessed image
    (C, z, y, x). A 2D model fills the result `batch_size` slices at a time (no full-size
    float32 copy with float16); `progress` is told the slices (2D) or windows (3D) done."""
    net = inference_network(model, plan.dims, device)
    volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    with autocast(device, amp, plan.dims, inference=True):
        if plan.dims == 2:
            return _predict_slices(net, volume, plan, device, batch_size, overlap, dtype,
                                   progress)
        predictor = _counting(net, _window_count(volume.shape[1:], plan.patch_size, overlap),
                              progress)
        logits = _window(predictor, volume[None].to(device), plan, batch_size, overlap)[0]
    return torch.softmax(logits.float(), dim=0).to("cpu", dtype)


def _predict_slices(net: Network, volume: torch.Tensor, plan: Plan,
                    device: torch.device, batch_size: int, overlap: float, dtype: torch.dtype,
                    progress: Progress | None) -> torch.Tensor:
    out: torch.Tensor | None = None
    for start, probs in _slice_batches(net, volume, plan, device, batch_size, overlap,
                                       progress):
        if out is None:
            out = torch.empty((probs.shape[0], volume.shape[1], *probs.shape[2:]), dtype=dtype)
        out[:, start:start + probs.shape[1]] = probs
    return out


@torch.no_grad()
def warm_up(model: SegmentationModel, plan: Plan, in_channels: int, device: torch.device,
            batch_size: int = 8, amp: bool = True) -> None:
    """Run the network once on `batch_size` blank windows (batch_size, in_channels, *patch) as
    `predict_probabilities` runs it (the same network copy, layout and precision): the first
    pass prepares the device's kernels (oneDNN's on the CPU: about 0.4 s for the 3D V-Net), so
    that a later segment of a model kept loaded (`arcoseg serve`) does not wait for them."""
    net = inference_network(model, plan.dims, device)
    blank = torch.zeros((batch_size, in_channels, *plan.patch_size), device=device)
    with autocast(device, amp, plan.dims, inference=True):
        net(blank)


def _slice_batches(net: Network, volume: torch.Tensor, plan: Plan,
                   device: torch.device, batch_size: int, overlap: float,
                   progress: Progress | None) -> Iterator[tuple[int, torch.Tensor]]:
    """(first slice, float32 probabilities (K, b, y, x) on the CPU) for each `batch_size`
    slices of a (C, z, y, x) volume."""
    slices = volume.permute(1, 0, 2, 3)  # (z, C, y, x): slices are the batch
    for start in range(0, slices.shape[0], batch_size):
        logits = _window(net, slices[start:start + batch_size].to(device), plan, batch_size,
                         overlap)
        yield start, torch.softmax(logits.float(), dim=1).cpu().permute(1, 0, 2, 3)
        if progress is not None:
            progress(min(start + batch_size, slices.shape[0]), slices.shape[0])


@torch.no_grad()
def predict_labels(model: SegmentationModel, image: np.ndarray, plan: Plan, device: torch.device,
                   batch_size: int = 8, overlap: float = 0.25, amp: bool = True,
                   progress: Progress | None = None) -> np.ndarray:
    """Class indices (z, y, x) uint8 on the model grid for a preprocessed image (C, z, y, x):
    the argmax of `predict_probabilities(..., dtype=torch.float16)` (ties: the lower class).
    A 2D model takes it `batch_size` slices at a time, so no (K, z, y, x) array exists; a 3D
    model's probabilities are reduced as many slices at a time (no int64 argmax exists)."""
    if plan.dims == 3:
        probs = predict_probabilities(model, image, plan, device, batch_size, overlap, amp,
                                      torch.float16, progress)
        chunks = ((z, probs[:, z:z + batch_size]) for z in range(0, probs.shape[1], batch_size))
    else:
        net = inference_network(model, plan.dims, device)
        volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        chunks = _slice_batches(net, volume, plan, device, batch_size, overlap, progress)
    out = np.empty(image.shape[1:], np.uint8)
    with autocast(device, amp, plan.dims, inference=True):
        for start, chunk in chunks:
            out[start:start + chunk.shape[1]] = chunk.to(torch.float16).argmax(dim=0).numpy()
    return out


def _window_count(size: tuple[int, ...], patch: tuple[int, ...], overlap: float) -> int:
    """Windows MONAI's sliding_window_inference visits (its scan rule) for a 3D volume."""
    count = 1
    for length, roi in zip(size, patch):
        step = max(int(roi * (1 - overlap)), 1)
        count *= 1 if length <= roi else math.ceil((length - roi) / step) + 1
    return count


def _counting(net: Network, total: int, progress: Progress | None) -> Network:
    """The network, reporting the windows it has seen to `progress`."""
    done = 0

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        nonlocal done
        logits = net(batch)
        done = min(done + batch.shape[0], total)
        if progress is not None:
            progress(done, total)
        return logits

    return predictor


def _window(net: Network, batch: torch.Tensor, plan: Plan, sw_batch: int,
            overlap: float) -> torch.Tensor:
    # MONAI pads inputs smaller than the window and blends overlapping windows (Gaussian).
    return sliding_window_inference(batch, roi_size=tuple(plan.patch_size), sw_batch_size=sw_batch,
                                    predictor=net, overlap=overlap, mode="gaussian")


@dataclass
class Segmentation:
    """A prediction on the input grid: labels with dataset values and per-class probabilities
    (None when not kept)."""

    labels: sitk.Image
    probabilities: np.ndarray | None  # (K, z, y, x) float16 on the input grid

    def entropy(self, chunk: int = 16) -> sitk.Image:
        """Normalised predictive entropy in [0, 1] (uncertainty map) on the input grid."""
        probs = self.probabilities
        out = np.empty(probs.shape[1:], np.float32)
        for z in range(0, out.shape[0], chunk):  # float32 work a few slices at a time
            out[z:z + chunk] = normalized_entropy(probs[:, z:z + chunk])
        return array_to_image(out, self.labels, np.float32)


def normalized_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Predictive entropy of (K, ...) class probabilities (any float type) divided by log K,
    in [0, 1], as float32 (clipped: rounded probabilities may sum to a little over 1)."""
    p = np.clip(probabilities.astype(np.float32, copy=False), 1e-8, 1.0)
    entropy = -(p * np.log(p)).sum(axis=0) / np.float32(math.log(p.shape[0]))
    return np.minimum(entropy, np.float32(1), out=entropy)


def segment_channels(model: SegmentationModel, metadata: ModelMetadata,
                     channels: list[sitk.Image], device: torch.device,
                     batch_size: int = 8, amp: bool = True, keep_probabilities: bool = True,
                     progress: Progress | None = None, release_inputs: bool = False
                     ) -> Segmentation:
    """Segment one case given its channel images (all on the same grid). Labels are the
    argmax of the float16 probabilities on the input grid (ties: the lower class).

    `release_inputs` empties `channels` once they are preprocessed, so that a caller that keeps
    no other reference frees the images before prediction (segment's peak memory)."""
    plan = Plan.from_dict(metadata.plan)
    output_grid = Grid.of(channels[0])
    oriented = [to_slicing_axis(c, plan.slice_axis) for c in channels]
    if release_inputs:
        channels.clear()
    reference = Grid.of(oriented[0])
    array, grid = preprocess_image(oriented, plan)
    del oriented
    kept = None
    if not keep_probabilities and grid_difference(grid, reference) is None:
        index = predict_labels(model, array, plan, device, batch_size=batch_size, amp=amp,
                               progress=progress)
        del array
    else:
        probs = predict_probabilities(model, array, plan, device, batch_size=batch_size, amp=amp,
                                      dtype=torch.float16, progress=progress).numpy()
        del array  # the preprocessed image is not needed any more
        index, kept = _labels_on_input_grid(probs, grid, reference, keep_probabilities)
        del probs
    values = np.asarray([c["value"] for c in metadata.classes], dtype=np.uint8)
    labels = array_from_slicing_axis(values[index], plan.slice_axis)
    del index
    if kept is not None:
        kept = array_from_slicing_axis(kept, plan.slice_axis)
    return Segmentation(array_to_image(labels, output_grid, np.uint8), kept)


def _labels_on_input_grid(probs: np.ndarray, grid: Grid, reference: Grid, keep: bool,
                          chunk: int = 8) -> tuple[np.ndarray, np.ndarray | None]:
    """Class indices (z, y, x) uint8 (argmax over classes) and, if `keep`, float16
    probabilities (K, z, y, x) on the reference grid, from float16 probabilities (K, z, y, x)
    on the model grid. One class at a time: it is resampled (linear), rounded to float16 and
    compared with the best so far `chunk` slices at a time, then dropped. The comparisons run
    in torch on views of the arrays (4x faster than numpy's float16, same values)."""
    same = grid_difference(grid, reference) is None
    best = np.empty(tuple(reversed(reference.size)), np.float16)
    index = np.zeros(best.shape, np.uint8)
    kept = np.empty((len(probs), *best.shape), np.float16) if keep else None
    best_t, index_t = torch.from_numpy(best), torch.from_numpy(index)
    for k in range(len(probs)):
        resampled = None if same else resample_to_reference(
            array_to_image(probs[k], grid, np.float32), reference, sitk.sitkLinear)
        p = probs[k] if same else sitk.GetArrayViewFromImage(resampled)  # a view: no copy
        for z in range(0, best.shape[0], chunk):
            part = torch.from_numpy(p[z:z + chunk].astype(np.float16))  # a writable copy
            if kept is not None:
                kept[k, z:z + chunk] = part.numpy()
            top = best_t[z:z + chunk]
            if k == 0:
                top.copy_(part)
                continue
            # strict: ties keep the lower class, as argmax
            index_t[z:z + chunk].masked_fill_(part > top, k)
            torch.maximum(top, part, out=top)
        del p, resampled
    return index, kept


def segment_file(model: SegmentationModel, metadata: ModelMetadata, channel_paths: list[Path],
                 output: Path, device: torch.device, probabilities: Path | None = None,
                 entropy: Path | None = None, batch_size: int = 8, amp: bool = True,
                 progress: Progress | None = None,
                 before_writing: Callable[[], None] | None = None) -> Segmentation:
    """Read a case, segment it, and write the label map (and optional maps) atomically, all or
    none of them (`io.images.pending_images`); `before_writing` is called once the work is done
    and nothing is written yet (it may raise, e.g. Cancelled).

    OutputError before segmenting if an output format cannot hold the image's grid."""
    channels = [read_image(p) for p in channel_paths]
    dimension = input_dimension(channel_paths[0])  # a 2D input gets 2D outputs
    for path, components in ((output, 1), (probabilities, len(metadata.classes)), (entropy, 1)):
        if path is not None:
            check_format_holds(channels[0], path, str(channel_paths[0]), components=components)
    seg = segment_channels(model, metadata, channels, device, batch_size=batch_size, amp=amp,
                           keep_probabilities=probabilities is not None or entropy is not None,
                           progress=progress, release_inputs=True)
    images = [(seg.labels, output)]
    if probabilities is not None:
        images.append((sitk.Compose([array_to_image(p, seg.labels, np.float32)
                                     for p in seg.probabilities]), probabilities))
    if entropy is not None:
        images.append((seg.entropy(), entropy))
    images = [(like_input(image, path, dimension), path) for image, path in images]
    if before_writing is not None:
        before_writing()
    # a Slicer segmentation (.seg.nrrd): segments named and coloured by class
    with pending_images(images, writers={SEG_NRRD: lambda labels, path: write_segmentation(
            labels, metadata.classes, path)}):
        pass
    return seg
