"""Iteration rate in the progress output and a warning when a busy machine slows training."""

from arcoseg.adapt.pace import PaceReporter
from arcoseg.progress import Reporter


class Recorder(Reporter):
    def __init__(self):
        super().__init__(quiet=True)
        self.events, self.logs = [], []

    def progress(self, step, total, message="", **fields):
        self.events.append((step, total, fields))

    def log(self, message, **fields):
        self.logs.append(message)


def drive(seconds_per_step: list[float], total: int = 100, iterations: int = 100):
    """Report every 5 iterations; `seconds_per_step[i]` is the time each of block i's 5 took."""
    now = [0.0]
    inner = Recorder()
    pace = PaceReporter(inner, iterations, budget=1000, clock=lambda: now[0])
    step = 0
    for seconds in seconds_per_step:
        step += 5
        now[0] += 5 * seconds
        pace.progress(step, total, "training", loss=1.0)
    return inner


def test_the_rate_is_shown_with_the_training_progress():
    inner = drive([0.5] * 6)
    assert inner.events[-1][2]["it_per_s"] == 2.0 and inner.events[-1][2]["loss"] == 1.0
    assert inner.logs == []


def test_a_tenfold_slowdown_is_warned_about_once():
    inner = drive([0.5] * 6 + [5.0] * 8)
    assert len(inner.logs) == 1 and "slowed" in inner.logs[0]


def test_a_budget_that_cuts_the_iterations_is_warned_about():
    inner = drive([0.5] * 6, total=60, iterations=100)
    assert len(inner.logs) == 1 and "60 of the 100 iterations" in inner.logs[0]
