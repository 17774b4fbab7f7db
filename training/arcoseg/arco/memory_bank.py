"""FIFO feature queues on the training device: the per-class negative memory bank of the
contrastive loss and the image-embedding queue of the nearest-neighbour loss.

Storage is a preallocated ring buffer (allocated at the first push, when the feature width is
known); pushing overwrites the oldest entries. Each entry carries an integer tag (the grid cell it
came from, used by the stratified samplers). State dicts hold tensors only, in oldest-first order,
so they fit safetensors checkpoints and a reload behaves exactly like the saved queue.
"""

from __future__ import annotations

import torch


class RingBuffer:
    """A FIFO of at most `capacity` float32 vectors, each with an int64 tag."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu") -> None:
        if capacity < 1:
            raise ValueError(f"Queue capacity must be at least 1, got {capacity}.")
        self.capacity, self.device = capacity, torch.device(device)
        self._feats: torch.Tensor | None = None
        self._tags: torch.Tensor | None = None
        self._next = 0  # slot the next entry goes to
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, feats: torch.Tensor, tags: torch.Tensor | None = None) -> None:
        """Append `feats` (n, D) (detached, stored as float32) with `tags` (n,) (default 0)."""
        if feats.ndim != 2:
            raise ValueError(f"Expected features of shape (n, D), got {tuple(feats.shape)}.")
        if tags is None:
            tags = torch.zeros(feats.shape[0], dtype=torch.long, device=feats.device)
        feats, tags = feats[-self.capacity:], tags[-self.capacity:]
        n = feats.shape[0]
        if n == 0:
            return
        if self._feats is None:
            self._feats = torch.zeros(self.capacity, feats.shape[1], device=self.device)
            self._tags = torch.zeros(self.capacity, dtype=torch.long, device=self.device)
        if feats.shape[1] != self._feats.shape[1]:
            raise ValueError(f"Features of width {feats.shape[1]} pushed into a queue of width "
                             f"{self._feats.shape[1]}.")
        slots = (self._next + torch.arange(n, device=self.device)) % self.capacity
        self._feats.index_copy_(0, slots, feats.detach().to(self.device, torch.float32))
        self._tags.index_copy_(0, slots, tags.to(self.device, torch.long))
        self._next = (self._next + n) % self.capacity
        self._size = min(self.capacity, self._size + n)

    def _ordered(self, storage: torch.Tensor | None) -> torch.Tensor | None:
        if storage is None or self._size < self.capacity:
            return None if storage is None else storage[:self._size]
        return torch.roll(storage, -self._next, dims=0)

    def get(self) -> torch.Tensor:
        """The stored features (n, D), oldest first; (0, 0) before the first push."""
        feats = self._ordered(self._feats)
        return torch.zeros(0, 0, device=self.device) if feats is None else feats

    def get_tags(self) -> torch.Tensor:
        """The tags (n,) of the stored features, oldest first."""
        tags = self._ordered(self._tags)
        return torch.zeros(0, dtype=torch.long, device=self.device) if tags is None else tags

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"feats": self.get().clone(), "tags": self.get_tags().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._feats, self._tags, self._next, self._size = None, None, 0, 0
        if state["feats"].numel():
            self.push(state["feats"], state["tags"])


class ClassMemoryBank:
    """One FIFO of feature vectors per class; class 0 (background) may have its own size."""

    def __init__(self, num_classes: int, dim: int | None = None, size: int = 30000,
                 background_size: int = 50000, device: torch.device | str = "cpu") -> None:
        self.dim = dim
        self.queues = [RingBuffer(background_size if c == 0 else size, device)
                       for c in range(num_classes)]

    def __len__(self) -> int:
        return len(self.queues)

    def push(self, class_idx: int, feats: torch.Tensor, tags: torch.Tensor | None = None) -> None:
        """Append `feats` (n, D) of class `class_idx`, dropping that class's oldest entries."""
        if self.dim is not None and feats.shape[-1] != self.dim:
            raise ValueError(f"Memory bank holds {self.dim}-d features, got {feats.shape[-1]}-d.")
        self.queues[class_idx].push(feats, tags)

    def get(self, class_idx: int) -> torch.Tensor:
        """Stored features (n, D) of class `class_idx`, oldest first."""
        return self.queues[class_idx].get()

    def get_tags(self, class_idx: int) -> torch.Tensor:
        """Tags (n,) of the stored features of class `class_idx`, oldest first."""
        return self.queues[class_idx].get_tags()

    def count(self, class_idx: int) -> int:
        return len(self.queues[class_idx])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{c}.{key}": value for c, queue in enumerate(self.queues)
                for key, value in queue.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for c, queue in enumerate(self.queues):
            queue.load_state_dict({key: state[f"{c}.{key}"] for key in ("feats", "tags")})
