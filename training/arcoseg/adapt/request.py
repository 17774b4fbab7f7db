"""What the user asked `arcoseg adapt` to do (the CLI, the serve worker, the demo and the
benchmark build one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from arcoseg.adapt.fusion import FusionSettings
from arcoseg.adapt.prior import ParentPriorSettings, PriorSettings
from arcoseg.constants import BACKGROUND
from arcoseg.errors import InputError, ModelFileError
from arcoseg.io.images import MAX_LABEL_VALUE
from arcoseg.model_metadata import check_class_names


@dataclass
class AdaptRequest:
    """What the user asked `arcoseg adapt` to do."""

    images: list[Path]
    annotations: list[Path]
    model: str | None = None
    classes: list[str] | None = None  # from scratch: foreground class names
    name: str | None = None
    axis: int | None = None
    slices: list[int] | None = None
    context_slices: int = 0  # from scratch: 2.5D input (data.context); a model brings its own
    unlabelled: list[Path] = field(default_factory=list)
    budget: float = 120.0
    iterations: int = 2000
    method: str = "arco"
    sampler: str = "sg"
    # supervised-only fraction of the schedule before the semi-supervised terms; None: half
    # from scratch (a random teacher's pseudo-labels wreck it, RESULTS.md), none from a parent
    warmup: float | None = None
    optimizer: str | None = None  # None: AdamW (adapt.schedule)
    lr: float | None = None  # None: the optimiser's default (adapt.schedule)
    # intensity augmentation (data.intensity): off, unlike `train`. It makes a model robust to
    # intensity differences between patients, but Adapt trains on and segments one image, and
    # with 0.5 ARCO scored 3-11 Dice points less on ACDC (training/benchmarks/RESULTS.md)
    jitter: float = 0.0
    holdout: bool = True
    early_stop: bool = True  # end once the supervised loss stops improving
    prior: PriorSettings = field(default_factory=PriorSettings)
    parent_prior: ParentPriorSettings = field(default_factory=ParentPriorSettings)  # from a model
    fusion: FusionSettings = field(default_factory=FusionSettings)  # the output: model + drawing
    suggestions: int = 3
    output: Path | None = None
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    home: Path | None = None  # registry home (default: $ARCOSEG_HOME or ~/.arcoseg)

    def __post_init__(self) -> None:
        """InputError for class names a model cannot hold (checked before any work)."""
        if self.classes is not None:
            if len(self.classes) > MAX_LABEL_VALUE:
                raise InputError(f"--classes names {len(self.classes)} classes; a label map holds "
                                 f"at most {MAX_LABEL_VALUE} besides {BACKGROUND} (value "
                                 f"{MAX_LABEL_VALUE + 1} marks unannotated voxels).")
            try:
                check_class_names([BACKGROUND, *self.classes])
            except ModelFileError as err:
                raise InputError(f"--classes {','.join(self.classes)}: {err} Name each "
                                 f"foreground class once ({BACKGROUND} is class 0 already)."
                                 ) from err
