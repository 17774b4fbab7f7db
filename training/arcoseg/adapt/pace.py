"""Training speed in the progress output, and a warning when the machine is too busy.

On a shared workstation other programs can slow training many times over. Adapt trains a fixed
number of iterations with the time budget as an upper bound, so a slow machine changes the result
only when the budget runs out first: this reporter shows the iteration rate on the progress bar
and says so, once, when the rate falls far below the best seen so far or the remaining iterations
will not fit the budget.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

from arcoseg.progress import Reporter

SLOW_FACTOR = 3.0  # warn below a third of the best rate seen
WINDOW = 4  # progress reports the rate is averaged over
MIN_STEPS = 10  # iterations before the first verdict (the first ones include warm-up costs)


class PaceReporter(Reporter):
    """Passes everything to `inner`; adds `it_per_s` to training progress and warns when slow.

    `iterations`: the planned count; `budget`: seconds at most (None/0: no limit; the trainer
    shortens its schedule, i.e. progress `total`, to fit it).
    `clock` is injectable for tests.
    """

    def __init__(self, inner: Reporter, iterations: int, budget: float | None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(quiet=True)
        self.inner, self.iterations, self.budget, self.clock = inner, iterations, budget, clock
        self.marks: deque[tuple[int, float]] = deque(maxlen=WINDOW + 1)
        self.best = 0.0
        self.warned = False
        self.phase: str | None = None  # the trainer's "phase" field (supervised warm-up or not)

    def progress(self, step: int, total: int, message: str = "", **fields: Any) -> None:
        if message == "training":
            if fields.get("phase") != self.phase:  # a supervised warm-up's iterations are
                self.phase = fields.get("phase")  # several times cheaper: a new baseline
                self.marks.clear()
                self.best = 0.0
            rate = self._rate(step)
            if rate is not None:
                fields = {**fields, "it_per_s": rate}
                self._maybe_warn(step, total, rate)
        self.inner.progress(step, total, message, **fields)

    def _rate(self, step: int) -> float | None:
        now = self.clock()
        if self.marks and step < self.marks[-1][0]:
            self.marks.clear()
        self.marks.append((step, now))
        (first, t0), (last, t1) = self.marks[0], self.marks[-1]
        if last - first < 1 or t1 <= t0:
            return None
        return (last - first) / (t1 - t0)

    def _maybe_warn(self, step: int, total: int, rate: float) -> None:
        if step < MIN_STEPS or len(self.marks) < WINDOW + 1:
            return
        self.best = max(self.best, rate)
        if self.warned:
            return
        if rate < self.best / SLOW_FACTOR:
            reason = (f"training slowed to {rate:.2f} iterations/s from {self.best:.2f}: other "
                      "programs are using the CPU")
        elif self.budget and step < total < self.iterations:
            reason = (f"at {rate:.2f} iterations/s the {self.budget:.0f} s budget allows about "
                      f"{total} of the {self.iterations} iterations")
        else:
            return
        self.warned = True
        self.inner.log(f"WARNING: {reason}. The result is the same if the iterations finish "
                       "within the budget; if the budget runs out first, fewer iterations make a "
                       "worse model. Close other programs, or pass --threads 1 on a busy machine.")

    def log(self, message: str, **fields: Any) -> None:
        self.inner.log(message, **fields)

    def result(self, **fields: Any) -> None:
        self.inner.result(**fields)

    def error(self, message: str, **fields: Any) -> None:
        self.inner.error(message, **fields)

    def close(self) -> None:
        self.inner.close()
