"""The preprocessing plan of a model (stored in its model.json, `Plan.to_dict`): dimensions,
target spacing, normalisation, label values, patch size, slice axis and 2.5D context.

Light on purpose (no numpy, SimpleITK or data layer): model.json's checks read it
(`model_metadata`, `modelfile`) in commands that must start fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from arcoseg.constants import IGNORE_LABEL, MAX_CONTEXT_SLICES
from arcoseg.errors import InputError, ModelFileError

NORMALIZATIONS = ("zscore", "ct")


@dataclass
class Plan:
    """How images are preprocessed for one model (stored in the model file)."""

    dims: int
    target_spacing: tuple[float, float, float]  # (z, y, x) mm; z ignored when dims == 2
    normalization: str  # 'zscore' | 'ct'
    label_values: list[int]  # dataset label values in class order
    patch_size: tuple[int, ...]  # (y, x) for dims 2, (z, y, x) for dims 3
    ct_clip: tuple[float, float] | None = None
    ct_mean: float | None = None
    ct_std: float | None = None
    slice_axis: int = 0  # array axis (0 z, 1 y, 2 x) a 2D model slices along
    # 2D only: neighbouring slices on each side given as extra input channels (2.5D input,
    # `data.context`); 0: the slice alone
    context_slices: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Inverse of `to_dict`; ModelFileError for a missing or invalid entry."""
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ModelFileError(f"The preprocessing plan is missing {', '.join(missing)}; the "
                                 "model file is incomplete or from another program.")
        try:
            # JSON types as written: a fraction, a string or true/false is refused, not
            # rounded or converted (a hand-edited 2.7 for dims was read as 2)
            plan = cls(
                dims=_count(data["dims"], "dims"),
                target_spacing=tuple(_number(s, "target_spacing")  # type: ignore[arg-type]
                                     for s in data["target_spacing"]),
                normalization=str(data["normalization"]),
                label_values=[_count(v, "label_values") for v in data["label_values"]],
                patch_size=tuple(_count(p, "patch_size") for p in data["patch_size"]),
                ct_clip=_optional(data.get("ct_clip"),
                                  lambda c: tuple(_number(v, "ct_clip") for v in c)),
                ct_mean=_optional(data.get("ct_mean"), lambda v: _number(v, "ct_mean")),
                ct_std=_optional(data.get("ct_std"), lambda v: _number(v, "ct_std")),
                slice_axis=_count(data.get("slice_axis", 0), "slice_axis"),
                context_slices=_count(data.get("context_slices", 0), "context_slices"),
            )
            plan.validate()
        except (TypeError, ValueError, InputError) as err:
            raise ModelFileError(f"The model file's preprocessing plan is invalid: {err}") from err
        return plan

    def input_channels(self, image_channels: int) -> int:
        """The network's input channels for images of `image_channels` channels: each channel
        of the slice and of its `context_slices` neighbours on each side."""
        return image_channels * (2 * self.context_slices + 1)

    def image_channels(self, input_channels: int) -> int:
        """Inverse of `input_channels`; ModelFileError if `input_channels` does not fit."""
        slices = 2 * self.context_slices + 1
        if input_channels < 1 or input_channels % slices:
            raise ModelFileError(f"The network's {input_channels} input channel(s) do not fit "
                                 f"{slices} slice(s) per input; the model file is inconsistent.")
        return input_channels // slices

    def validate(self) -> None:
        """Raise InputError for inconsistent settings."""
        if self.dims not in (2, 3):
            raise InputError(f"dims must be 2 or 3, not {self.dims}.")
        if len(self.patch_size) != self.dims or min(self.patch_size) < 1:
            raise InputError(f"A {self.dims}D patch size needs {self.dims} positive sizes, "
                             f"got {tuple(self.patch_size)}.")
        if len(self.target_spacing) != 3 or not all(math.isfinite(s) and s > 0
                                                     for s in self.target_spacing):
            raise InputError(f"Target spacing must be 3 positive numbers (z, y, x), "
                             f"got {tuple(self.target_spacing)}.")
        if (len(set(self.label_values)) != len(self.label_values)
                or not all(0 <= v < IGNORE_LABEL for v in self.label_values)):
            raise InputError(f"label_values must be distinct values 0..{IGNORE_LABEL - 1}, got "
                             f"{self.label_values}.")
        if self.slice_axis not in (0, 1, 2) or (self.dims == 3 and self.slice_axis != 0):
            raise InputError(f"slice_axis must be 0, 1 or 2 (and 0 for 3D), not {self.slice_axis}.")
        limit = MAX_CONTEXT_SLICES if self.dims == 2 else 0
        if not 0 <= self.context_slices <= limit:
            raise InputError(f"context_slices must be 0..{MAX_CONTEXT_SLICES} (and 0 for 3D), "
                             f"not {self.context_slices}.")
        if self.normalization not in NORMALIZATIONS:
            raise InputError(f"normalization must be one of {NORMALIZATIONS}, "
                             f"not {self.normalization!r}.")
        if self.normalization == "ct":
            self._validate_ct()

    def _validate_ct(self) -> None:
        """CT statistics that normalise: a finite clip window low < high, a finite mean and a
        finite standard deviation > 0."""
        if self.ct_clip is None or self.ct_mean is None or self.ct_std is None:
            raise InputError("CT normalization needs ct_clip, ct_mean and ct_std.")
        low, high = self.ct_clip
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise InputError(f"ct_clip must be two finite numbers, low < high, got "
                             f"{tuple(self.ct_clip)}.")
        if not (math.isfinite(self.ct_mean) and math.isfinite(self.ct_std) and self.ct_std > 0):
            raise InputError(f"ct_mean must be finite and ct_std finite and > 0, got "
                             f"{self.ct_mean} and {self.ct_std}.")


def _optional(value: Any, convert: Any) -> Any:
    return None if value is None else convert(value)


def _count(value: Any, name: str) -> int:
    """`value` if it is a whole JSON number (not a string, a fraction or true/false)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    """`value` as a float if it is a JSON number (not a string or true/false)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, not {value!r}")
    return float(value)
