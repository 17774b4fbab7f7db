"""Early stopping: when the supervised loss stops improving, and the held-out score with it."""

from __future__ import annotations


class Convergence:
    """Windowed mean of the supervised loss; converged when two windows bring < 2 % gain and
    the held-out score (`add_score`, when a caller scores one) has stopped improving too."""

    def __init__(self, window: int = 25, min_fraction: float = 0.3, min_iterations: int = 0,
                 min_gain: float = 0.01) -> None:
        self.window, self.min_fraction, self.min_iterations = window, min_fraction, min_iterations
        self.min_gain = min_gain  # of the score (Dice 0..1) that counts as still improving
        self.losses: list[float] = []
        self.scores: list[float] = []

    def add(self, loss: float) -> None:
        """Record one iteration's loss."""
        self.losses.append(loss)

    def add_score(self, score: float) -> None:
        """Record one held-out or validation score (higher is better, e.g. Dice 0..1)."""
        self.scores.append(score)

    def score_improving(self) -> bool:
        """Whether the best of the last two scores beats every earlier one by `min_gain`
        (False with fewer than three scores: no trend to follow)."""
        if len(self.scores) < 3:
            return False
        return max(self.scores[-2:]) > max(self.scores[:-2]) + self.min_gain

    def converged(self, iteration: int, total: int) -> bool:
        """Whether training can stop (never before `min_iterations` + `min_fraction` of the
        schedule, nor while the held-out score still improves)."""
        w = self.window
        if (iteration < self.min_iterations + self.min_fraction * total
                or len(self.losses) < 4 * w or self.score_improving()):
            return False
        means = [sum(self.losses[i - w:i]) / w for i in range(len(self.losses), 0, -w)][:4]
        recent, earlier = min(means[:2]), min(means[2:])
        return recent > 0.98 * earlier
