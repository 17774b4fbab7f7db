"""model.json's content: `ModelMetadata` (network, classes, preprocessing plan, provenance) with
its validation, and the class list rules (names, label values, colours). `arcoseg.modelfile`
reads and writes it next to the weights."""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from arcoseg.constants import IGNORE_LABEL
from arcoseg.data.plan import Plan
from arcoseg.errors import ModelFileError
from arcoseg.networks import NetworkConfig
from arcoseg.networks.model import is_integer

FORMAT_VERSION = 1
_METADATA_KEYS = ("format_version", "network", "classes", "plan", "provenance", "weights_sha256")
_CLASS_KEYS = ("name", "value", "color")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

# ITK-SNAP's default label colours (red, green, blue, yellow, ...), familiar to clinicians;
# classes beyond them get golden-ratio hues.
_PALETTE = [
    [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255],
    [255, 239, 213], [0, 0, 205], [205, 133, 63], [210, 180, 140], [102, 205, 170], [0, 0, 128],
    [0, 139, 139], [46, 139, 87], [255, 228, 225], [106, 90, 205], [221, 160, 221],
    [233, 150, 122], [165, 42, 42], [255, 250, 250],
]


def default_colors(num_classes: int) -> list[list[int]]:
    """RGB (0-255) colours for classes 0..num_classes-1; background (class 0) is black."""
    colors = [[0, 0, 0]] + [list(c) for c in _PALETTE[:max(num_classes - 1, 0)]]
    for i in range(len(colors), num_classes):
        hue = (i * 0.618033988749895) % 1.0
        colors.append([round(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.75, 0.9)])
    return colors[:num_classes]


def make_classes(names: Sequence[str], values: Sequence[int] | None = None,
                 colors: Sequence[Sequence[int]] | None = None) -> list[dict[str, Any]]:
    """Class entries for `ModelMetadata.classes` (values default to 0..K-1, default colours)."""
    values = list(range(len(names))) if values is None else list(values)
    colors = default_colors(len(names)) if colors is None else colors
    return [{"name": n, "value": v, "color": list(c)} for n, v, c in zip(names, values, colors)]


@dataclass
class ModelMetadata:
    """Contents of model.json; validated on construction (ModelFileError).

    `network` is the JSON form of a `NetworkConfig` (a NetworkConfig given is converted);
    `network_config` parses it.
    """

    network: dict[str, Any]
    classes: list[dict[str, Any]]
    plan: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.network, NetworkConfig):
            self.network = self.network.to_dict()
        config = NetworkConfig.from_dict(self.network)
        self.network = config.to_dict()
        self.classes = [_check_class(c) for c in self.classes]
        if len(self.classes) != config.num_classes:
            raise ModelFileError(f"{len(self.classes)} classes are described "
                                 f"({self.class_names}) but the network has "
                                 f"{config.num_classes} outputs.")
        check_class_names(self.class_names)
        values = [c["value"] for c in self.classes]
        if len(set(values)) != len(values):
            raise ModelFileError(f"Class values must be unique, got {values}.")
        for key in ("plan", "provenance"):
            if not isinstance(getattr(self, key), dict):
                raise ModelFileError(f"'{key}' must be a JSON object.")
        if self.plan:
            self._check_plan(values, config)

    def _check_plan(self, values: list[int], config: NetworkConfig) -> None:
        """ModelFileError unless the plan is valid (`Plan.from_dict`), its patch fits the
        network (multiples of its input divisor), its label values are the classes' values in
        order and the network's input channels fit its 2.5D context (a file edited by hand may
        disagree)."""
        plan = Plan.from_dict(self.plan)
        if plan.dims != config.spatial_dims:
            raise ModelFileError(f"The plan is for {plan.dims}D input but the network "
                                 f"({config.arch}) is {config.spatial_dims}D; the model file was "
                                 "edited or is from another program.")
        plan.image_channels(config.in_channels)
        divisor = config.input_divisor
        if any(size % divisor for size in plan.patch_size):
            raise ModelFileError(f"The plan's patch_size {tuple(plan.patch_size)} is not a "
                                 f"multiple of {divisor} along every axis, as the network's "
                                 "down-samplings need; the model file was edited or is from "
                                 "another program.")
        if plan.label_values != values:
            raise ModelFileError(f"The plan's label_values {plan.label_values} disagree with the "
                                 f"classes' values {values}; the model file was edited or is "
                                 "from another program.")

    @property
    def network_config(self) -> NetworkConfig:
        """The network settings as a `NetworkConfig`."""
        return NetworkConfig.from_dict(self.network)

    @property
    def class_names(self) -> list[str]:
        """Class names, background first."""
        return [c["name"] for c in self.classes]

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """The model.json object."""
        return {"format_version": self.format_version, "network": dict(self.network),
                "classes": [dict(c) for c in self.classes], "plan": self.plan,
                "provenance": self.provenance, "weights_sha256": self.weights_sha256}

    @classmethod
    def from_dict(cls, data: Any) -> ModelMetadata:
        """Parse a model.json object; ModelFileError if it is newer, incomplete or invalid."""
        if not isinstance(data, dict):
            raise ModelFileError("model.json must hold a JSON object.")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ModelFileError(f"'format_version' must be a positive integer, got {version!r}.")
        if version > FORMAT_VERSION:
            raise ModelFileError(f"The model was written by a newer ARCOSegment (model format "
                                 f"{version}; this version reads up to {FORMAT_VERSION}). "
                                 "Upgrade ARCOSegment to use it.")
        missing = [k for k in _METADATA_KEYS if k not in data]
        if missing:
            raise ModelFileError(f"model.json lacks {missing}.")
        digest = data["weights_sha256"]
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise ModelFileError(f"'weights_sha256' must be a 64-digit hex string, got {digest!r}.")
        digest = digest.lower()  # hashlib writes lower case; other tools may not
        if not isinstance(data["classes"], list):
            raise ModelFileError("'classes' must be a list.")
        return cls(network=data["network"], classes=data["classes"],
                   plan=data["plan"], provenance=data["provenance"], weights_sha256=digest,
                   format_version=version)


def check_class_names(names: Sequence[Any]) -> None:
    """ModelFileError unless every class name is a non-empty string of printable characters
    (a line break would end a .seg.nrrd header line) and no two are equal up to case and
    surrounding spaces: Slicer segments are matched to classes that way
    (`io.segnrrd`, the module's `segments.py`), so 'LV' and 'lv' would be one segment."""
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ModelFileError(f"Class name must be a non-empty string, got {name!r}.")
        if any(not character.isprintable() for character in name):
            raise ModelFileError(f"Class name {name!r} holds a control character (a line "
                                 "break, tab, ...); use a name of printable characters.")
    if len({name.strip().lower() for name in names}) != len(names):
        raise ModelFileError(f"Class names must be unique (ignoring case), got {list(names)}.")


def _check_class(entry: Any) -> dict[str, Any]:
    """A validated copy of one {"name", "value", "color"} class entry."""
    if not isinstance(entry, Mapping) or sorted(entry) != sorted(_CLASS_KEYS):
        raise ModelFileError(f"A class entry must have exactly the keys {list(_CLASS_KEYS)}, "
                             f"got {entry!r}.")
    name, value, color = entry["name"], entry["value"], entry["color"]
    check_class_names([name])
    if not is_integer(value) or not 0 <= value < IGNORE_LABEL:
        raise ModelFileError(f"Class {name!r}: 'value' must be an integer 0..{IGNORE_LABEL - 1} "
                             f"({IGNORE_LABEL} marks unannotated voxels), got {value!r}.")
    if (not isinstance(color, (list, tuple)) or len(color) != 3
            or not all(is_integer(c) and 0 <= c <= 255 for c in color)):
        raise ModelFileError(f"Class {name!r}: 'color' must be 3 integers 0-255, got {color!r}.")
    return {"name": name, "value": int(value), "color": [int(c) for c in color]}


# ---------------------------------------------------------------------------------------- save
