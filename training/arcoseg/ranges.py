"""Allowed ranges of numeric settings: one place for each rule, used by argparse and the engine.

A `Range` is an argparse `type=` (a bad command-line value ends the run before any work with
exit 2 and "argument --batch: 0 is out of range: expected a whole number >= 1") and checks
values given through the Python API (`Range.check`, raising ArcosegError naming the setting).
Non-finite numbers (nan, inf) are never in range.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from arcoseg.constants import MAX_CONTEXT_SLICES
from arcoseg.errors import ArcosegError


@dataclass(frozen=True)
class Range:
    """Numbers of type `kind` (int or float) between `low` and `high` (None: unbounded).

    `low_open` / `high_open` exclude the bound itself (e.g. a learning rate > 0).
    """

    kind: type = int
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """The range in words, e.g. 'a whole number >= 1' or 'a number in [0, 1)'."""
        noun = "a whole number" if self.kind is int else "a number"
        low, high = _fmt(self.low), _fmt(self.high)
        if self.low is not None and self.high is not None:
            return (f"{noun} in {'(' if self.low_open else '['}{low}, {high}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{noun} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{noun} {'<' if self.high_open else '<='} {high}"
        return noun

    def contains(self, value: float) -> bool:
        """Whether `value` (already of the right type) lies in the range."""
        if isinstance(value, float) and not math.isfinite(value):  # an int: isfinite overflows
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high
                                         or (self.high_open and value == self.high))

    def check(self, value: float, setting: str) -> float:
        """`value` if it is in range, else ArcosegError naming `setting` (e.g. '--budget')."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (self.kind is int and not float(value).is_integer()) \
                or not self.contains(value):
            raise ArcosegError(f"{setting} must be {self.describe()}, not {value!r}.")
        return value

    def __call__(self, text: str) -> int | float:
        """argparse type: parse `text`; ArgumentTypeError (exit 2) if it is not in range."""
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {self.describe()}") from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(
                f"{text} is out of range: expected {self.describe()}")
        return value


@dataclass(frozen=True)
class ListOf:
    """argparse type: comma-separated values, each in `item` (e.g. seeds '0,1,2')."""

    item: Range

    def __call__(self, text: str) -> list[int | float]:
        """Parse `text`; ArgumentTypeError naming the bad value or an empty list."""
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(
                f"{text!r} holds no value: give comma-separated values, each "
                f"{self.item.describe()}")
        return [self.item(part) for part in parts]


def _fmt(bound: float | None) -> str:
    return "" if bound is None else f"{bound:g}"


POSITIVE_INT = Range(int, 1)  # counts and sizes: iterations, batch, threads, slices
NONNEG_INT = Range(int, 0)  # counts that may be zero: warm-up, ramp-up, suggestions
SEED = Range(int, 0, 2**31 - 1)  # every random generator used accepts these
POSITIVE = Range(float, 0, low_open=True)  # learning rate, seconds, millimetres
NONNEG = Range(float, 0)  # loss weights (0 switches a term off)
FRACTION = Range(float, 0, 1, high_open=True)  # a part of a schedule or a strength below 1
UNIT = Range(float, 0, 1)  # a mixing weight, both ends included
SHARE = Range(float, 0, 1, low_open=True)  # a part that cannot be empty (0 < x <= 1)
CONTEXT_SLICES = Range(int, 0, MAX_CONTEXT_SLICES)  # 2.5D neighbours on each side
# windows or slices per inference pass: more never fit memory at a 3D patch, and a 2D volume's
# slices past that gain nothing (`models check --batch 100000` of a tiny 2D model: 16 s)
WINDOW_BATCH = Range(int, 1, 1024)
# images (slices or patches) per training iteration: 1024 is far past any GPU's memory at the
# paper's patch sizes, and `--batch 1e20` passed a POSITIVE_INT check, then grew to 12.8 GB
# before the first iteration (no stop request is read until then)
TRAIN_BATCH = Range(int, 1, 1024)
