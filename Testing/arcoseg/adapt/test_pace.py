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


def drive(seconds_per_step: list[float], total: int = 100, iterations: int = 100,
          phases: list[str] | None = None):
    """Report every 5 iterations; `seconds_per_step[i]` is the time each of block i's 5 took,
    `phases[i]` the trainer's phase field of that report."""
    now = [0.0]
    inner = Recorder()
    pace = PaceReporter(inner, iterations, budget=1000, clock=lambda: now[0])
    step = 0
    for i, seconds in enumerate(seconds_per_step):
        step += 5
        now[0] += 5 * seconds
        phase = {"phase": phases[i]} if phases else {}
        pace.progress(step, total, "training", loss=1.0, **phase)
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


def test_the_end_of_a_supervised_warm_up_is_not_a_busy_machine():
    # the semi-supervised iterations cost 4x the warm-up's: a new baseline, no warning
    phases = ["supervised"] * 8 + ["semi-supervised"] * 8
    inner = drive([0.1] * 8 + [0.4] * 8, total=1000, iterations=1000, phases=phases)
    assert inner.logs == []
    assert inner.events[-1][2]["it_per_s"] == 2.5


def test_a_slowdown_within_the_semi_supervised_phase_is_still_warned_about():
    phases = ["supervised"] * 8 + ["semi-supervised"] * 16
    inner = drive([0.1] * 8 + [0.4] * 8 + [4.0] * 8, total=1000, iterations=1000, phases=phases)
    assert len(inner.logs) == 1 and "slowed" in inner.logs[0] and "from 2.50" in inner.logs[0]
