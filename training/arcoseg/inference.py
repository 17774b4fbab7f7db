"""Segmentation of whole volumes: 2D models slice by slice, 3D models by sliding windows.

Prediction runs on the model's preprocessed grid (target spacing, normalised intensities); the
class probabilities are resampled back to the input grid before the argmax, so the written label
map has exactly the input's size, spacing, origin and direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference

from arcoseg.data.orientation import array_from_slicing_axis, to_slicing_axis
from arcoseg.data.preprocess import Plan, preprocess_image, resample_to_reference
from arcoseg.device import autocast
from arcoseg.io.images import array_to_image, geometry_difference, read_image, write_image
from arcoseg.io.segnrrd import is_seg_nrrd, write_segmentation
from arcoseg.modelfile import ModelMetadata
from arcoseg.networks.model import SegmentationModel


@torch.no_grad()
def predict_probabilities(model: SegmentationModel, image: np.ndarray, plan: Plan,
                          device: torch.device, batch_size: int = 8, overlap: float = 0.25,
                          amp: bool = True) -> torch.Tensor:
    """Softmax probabilities (K, z, y, x) on the CPU for a preprocessed image (C, z, y, x)."""
    model.eval()
    volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    with autocast(device, amp):
        if plan.dims == 2:
            slices = volume.permute(1, 0, 2, 3)  # (z, C, y, x): slices are the batch
            chunks = [_window(model, slices[i:i + batch_size].to(device), plan, batch_size,
                              overlap) for i in range(0, slices.shape[0], batch_size)]
            logits = torch.cat(chunks).permute(1, 0, 2, 3)
        else:
            logits = _window(model, volume[None].to(device), plan, batch_size, overlap)[0]
    return torch.softmax(logits.float(), dim=0).cpu()


def _window(model: SegmentationModel, batch: torch.Tensor, plan: Plan, sw_batch: int,
            overlap: float) -> torch.Tensor:
    # MONAI pads inputs smaller than the window and blends overlapping windows (Gaussian).
    return sliding_window_inference(batch, roi_size=tuple(plan.patch_size), sw_batch_size=sw_batch,
                                    predictor=model, overlap=overlap, mode="gaussian")


@dataclass
class Segmentation:
    """A prediction on the input grid: labels with dataset values and per-class probabilities."""

    labels: sitk.Image
    probabilities: np.ndarray  # (K, z, y, x) float32 on the input grid

    def entropy(self) -> sitk.Image:
        """Normalised predictive entropy in [0, 1] (uncertainty map) on the input grid."""
        return array_to_image(normalized_entropy(self.probabilities).astype(np.float32),
                              self.labels, np.float32)


def normalized_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Predictive entropy of (K, ...) class probabilities divided by log K, in [0, 1]."""
    p = np.clip(probabilities, 1e-8, 1.0)
    return -(p * np.log(p)).sum(axis=0) / math.log(p.shape[0])


def segment_channels(model: SegmentationModel, metadata: ModelMetadata,
                     channels: list[sitk.Image], device: torch.device,
                     batch_size: int = 8, amp: bool = True) -> Segmentation:
    """Segment one case given its channel images (all on the same grid)."""
    plan = Plan.from_dict(metadata.plan)
    oriented = [to_slicing_axis(c, plan.slice_axis) for c in channels]
    array, grid = preprocess_image(oriented, plan)
    probs = predict_probabilities(model, array, plan, device, batch_size=batch_size, amp=amp)
    probs_np = array_from_slicing_axis(_to_input_grid(probs.numpy(), grid, oriented[0]),
                                       plan.slice_axis)
    values = np.asarray([c["value"] for c in metadata.classes], dtype=np.uint8)
    labels = values[probs_np.argmax(axis=0)]
    return Segmentation(array_to_image(labels, channels[0], np.uint8), probs_np)


def _to_input_grid(probs: np.ndarray, grid: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Resample each class's probability map from the model grid back to the input grid."""
    if geometry_difference(grid, reference) is None:
        return probs.astype(np.float32, copy=False)
    out = [sitk.GetArrayFromImage(resample_to_reference(
        array_to_image(p.astype(np.float32), grid, np.float32), reference, sitk.sitkLinear))
        for p in probs]
    return np.stack(out).astype(np.float32)


def segment_file(model: SegmentationModel, metadata: ModelMetadata, channel_paths: list[Path],
                 output: Path, device: torch.device, probabilities: Path | None = None,
                 entropy: Path | None = None, batch_size: int = 8, amp: bool = True) -> Segmentation:
    """Read a case, segment it, and write the label map (and optional maps) atomically."""
    channels = [read_image(p) for p in channel_paths]
    seg = segment_channels(model, metadata, channels, device, batch_size=batch_size, amp=amp)
    if is_seg_nrrd(output):  # a Slicer segmentation: segments named and coloured by class
        write_segmentation(seg.labels, metadata.classes, output)
    else:
        write_image(seg.labels, output)
    if probabilities is not None:
        vector = sitk.GetImageFromArray(np.moveaxis(seg.probabilities, 0, -1), isVector=True)
        vector.CopyInformation(seg.labels)
        write_image(vector, probabilities)
    if entropy is not None:
        write_image(seg.entropy(), entropy)
    return seg
