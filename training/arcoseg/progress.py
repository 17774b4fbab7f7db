"""Progress reporting: tqdm bars for people, JSON lines (`--progress json`) for programs.

JSON protocol, one object per line on stdout, flushed at once:
  {"event": "progress", "step": 3, "total": 10, "message": "...", ...extra fields}
  {"event": "log", "message": "...", ...}
  {"event": "result", ...command-specific fields}
  {"event": "error", "message": "...", "exit_code": 2}
The Slicer module and batch scripts parse these; every other stdout line is ignored by them.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Iterable, Iterator, Sequence, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def to_jsonable(value: Any) -> Any:
    """Plain JSON values (NaN/Inf become null, numpy scalars become Python numbers)."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


_LINE = 200  # characters of a result value that fit on its line
_ITEMS = 20  # items of a long top-level list printed one per line


class Reporter:
    """Human-readable reporter: tqdm progress bars and log lines on stderr, result on stdout."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._bar: tqdm | None = None
        self._finished: tuple[str, int] | None = None  # (message, step) of the last full bar
        self._shown: set[str] = set()  # result fields a `show` text presented

    def progress(self, step: int, total: int, message: str = "", **fields: Any) -> None:
        """Report that `step` of `total` units are done.

        One bar per phase: a bar lives until `step` reaches `total`; a changed `total` (a time
        budget re-estimated) updates it in place, and only a `step` below the bar's starts a new
        one. A bar opened part-way (a resumed run) counts its rate from there. A repeated report
        of a finished bar's last step draws nothing.
        """
        if self.quiet or (step >= total and self._bar is None
                          and self._finished == (message, step)):
            return
        if self._bar is not None and step < self._bar.n:
            self.close()
        if self._bar is None:
            self._bar = tqdm(total=total, initial=min(step, total), file=self.stream,
                             dynamic_ncols=True, leave=True)
        elif self._bar.total != total:
            self._bar.total = total
        self._bar.set_description(message, refresh=False)
        shown = {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in fields.items()}
        if shown:
            self._bar.set_postfix(shown, refresh=False)
        self._bar.update(step - self._bar.n)
        if step >= total:
            self.close()
            self._finished = (message, step)

    def track(self, items: Iterable[T], total: int, message: str = "") -> Iterator[T]:
        """Iterate over `items`, reporting progress after each one."""
        for i, item in enumerate(items, start=1):
            yield item
            self.progress(i, total, message)

    def log(self, message: str, **fields: Any) -> None:
        """A line of information for the user."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def show(self, text: str, covers: Sequence[str] = ()) -> None:
        """Human-readable output that is the result itself (e.g. a table): stdout, also with
        --progress none; programs read the result event instead (--progress json). `covers`:
        the result fields `text` presents, which the text result then leaves out."""
        self.close()
        self._shown = set(covers)
        print(text, file=sys.stdout, flush=True)

    def result(self, **fields: Any) -> None:
        """The command's final result on stdout, `key: value` lines (`_result_lines`); nothing
        is cut short: what does not fit is summarised (full detail: --progress json)."""
        self.close()
        for key, value in to_jsonable(fields).items():
            for line in [] if key in self._shown else _result_lines(key, value):
                print(line, flush=True)

    def error(self, message: str, **fields: Any) -> None:
        """A fatal, user-actionable error."""
        self.close()
        print(f"error: {message}", file=self.stream, flush=True)

    def close(self) -> None:
        """Close any open progress bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class JsonReporter(Reporter):
    """Machine-readable reporter: one JSON object per line on stdout."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stdout)

    def _emit(self, event: str, **fields: Any) -> None:
        line = json.dumps(to_jsonable({"event": event, **fields}), allow_nan=False)
        self.stream.write(line + "\n")
        self.stream.flush()

    def progress(self, step: int, total: int, message: str = "", **fields: Any) -> None:
        self._emit("progress", step=step, total=total, message=message, **fields)

    def log(self, message: str, **fields: Any) -> None:
        self._emit("log", message=message, **fields)

    def show(self, text: str, covers: Sequence[str] = ()) -> None:
        pass  # the result event carries the same data

    def result(self, **fields: Any) -> None:
        self._emit("result", **fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit("error", message=message, **fields)

    def close(self) -> None:
        pass


def tolerate_any_encoding() -> None:
    """Let stdout and stderr print any text, whatever their encoding: a character they cannot
    encode (a Chinese folder name on an ASCII pipe or a Windows console) is written as a
    backslash escape instead of raising UnicodeEncodeError after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def make_reporter(mode: str) -> Reporter:
    """'text' → tqdm/human output; 'json' → JSON lines; 'none' → results only.

    Also makes stdout and stderr tolerate any encoding (`tolerate_any_encoding`)."""
    tolerate_any_encoding()
    if mode == "json":
        return JsonReporter()
    return Reporter(quiet=(mode == "none"))


def _result_lines(key: str, value: Any, depth: int = 0) -> list[str]:
    """`key: value` for `Reporter.result`: a value that fits on the line is printed whole; at
    the top level an object too long for its line gets one indented line per member and a list
    one line per item (up to _ITEMS); deeper, or longer, they are summarised."""
    text = value if isinstance(value, str) else json.dumps(value)
    indent = "  " * depth
    if len(text) <= _LINE or not isinstance(value, (dict, list)):
        return [f"{indent}{key}: {text}"]
    if depth > 0 or (isinstance(value, list) and len(value) > _ITEMS):
        what = "settings" if isinstance(value, dict) else "entries"
        return [f"{indent}{key}: {len(value)} {what} (full detail: --progress json)"]
    if isinstance(value, list):
        return [f"{indent}{key}:"] + [f"{indent}  - {json.dumps(item)}" for item in value]
    lines = [f"{indent}{key}:"]
    for member, item in value.items():
        lines += _result_lines(member, item, depth + 1)
    return lines
