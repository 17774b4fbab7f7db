"""Early stopping: when the supervised loss stops improving."""

from __future__ import annotations


class Convergence:
    """Windowed mean of the supervised loss; converged when two windows bring < 2 % gain."""

    def __init__(self, window: int = 25, min_fraction: float = 0.3, min_iterations: int = 0
                 ) -> None:
        self.window, self.min_fraction, self.min_iterations = window, min_fraction, min_iterations
        self.losses: list[float] = []

    def add(self, loss: float) -> None:
        """Record one iteration's loss."""
        self.losses.append(loss)

    def converged(self, iteration: int, total: int) -> bool:
        """Whether training can stop (never before `min_iterations` + `min_fraction` of the
        schedule)."""
        w = self.window
        if (iteration < self.min_iterations + self.min_fraction * total
                or len(self.losses) < 4 * w):
            return False
        means = [sum(self.losses[i - w:i]) / w for i in range(len(self.losses), 0, -w)][:4]
        recent, earlier = min(means[:2]), min(means[2:])
        return recent > 0.98 * earlier
