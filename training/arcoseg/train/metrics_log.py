"""The training metrics log: one JSON object per line (iteration, losses, lr, validation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arcoseg.fileutil import ensure_parent_writable, write_text_atomic
from arcoseg.progress import to_jsonable


class MetricsLog:
    """Append-only JSONL log that a resumed run trims back to its checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        """Add one record (flushed at once, so a crash loses nothing logged)."""
        ensure_parent_writable(self.path)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(to_jsonable(record)) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """All records so far (a torn last line from a crash is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def truncate_after(self, iteration: int) -> None:
        """Drop records past `iteration` (logged after the checkpoint a resume starts from)."""
        kept = [r for r in self.records() if r.get("iteration", 0) <= iteration]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
