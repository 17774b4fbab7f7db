"""The engine's JSON-lines events as the module sees them: exit codes, `EngineError`, the
callbacks a run calls, and `parse_line` (one output line → one event, checked). No Slicer import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

# Exit codes of the engine (mirrors arcoseg.errors; the module never imports the engine, which
# runs in another interpreter with heavy dependencies).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CANCELLED = 3


class EngineError(Exception):
    """The engine failed, was cancelled, or could not be started; `str(err)` is for the user."""

    def __init__(self, message: str, exit_code: int = EXIT_INTERNAL, kind: str = "internal") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.kind = kind

    @property
    def cancelled(self) -> bool:
        """True when the run stopped because it was cancelled."""
        return self.exit_code == EXIT_CANCELLED


@dataclass
class EngineCallbacks:
    """Optional handlers, all called on the thread that runs `poll()` / `wait()`."""

    progress: Callable[[dict[str, Any]], None] | None = None  # the whole progress event
    log: Callable[[str], None] | None = None
    result: Callable[[dict[str, Any]], None] | None = None  # the result event without "event"
    error: Callable[[EngineError], None] | None = None


def parse_line(line: str, final_fields: Sequence[str] = ()) -> dict[str, Any]:
    """One output line as an event; anything that is not a JSON event object is a log line.

    An event whose fields have the wrong types ("id" no string, "exit_code" no whole number,
    "step"/"total" no number), or a result/error event without one of `final_fields` (the
    worker's "exit_code"), becomes an error event: a mismatched engine must not hang a run."""
    text = line.rstrip("\r\n")
    try:
        event = json.loads(text)
    except ValueError:
        event = None
    if not (isinstance(event, dict) and isinstance(event.get("event"), str)):
        return {"event": "log", "message": text}
    bad = [key for key, ok in _FIELD_TYPES.items() if key in event and not ok(event[key])]
    if event["event"] in ("result", "error"):
        bad += [key for key in final_fields if key not in event]
    if bad:
        run_id = event.get("id") if isinstance(event.get("id"), str) else None
        return {"event": "error", "id": run_id, "exit_code": EXIT_INTERNAL, "kind": "internal",
                "message": f"The engine sent an event with a missing or invalid "
                           f"{' and '.join(bad)}: "
                           f"{text[:200]}. Is the engine the version this module expects?"}
    return event


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_FIELD_TYPES = {"id": lambda v: isinstance(v, str) or v is None,
                "exit_code": lambda v: isinstance(v, int) and not isinstance(v, bool),
                "step": lambda v: v is None or _is_count(v),
                "total": lambda v: v is None or _is_count(v)}
