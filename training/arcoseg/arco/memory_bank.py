"""FIFO feature queues on the training device: the per-class negative memory bank of the
contrastive loss and the image-embedding queue of the nearest-neighbour loss.

Storage is preallocated (at the first push, when the feature width is known); pushing overwrites
the oldest entries. Each entry carries an integer tag (the grid cell it
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
    """One FIFO of feature vectors per class; class 0 (background) may have its own size.

    All classes share one device tensor (K, max capacity + 1, D); the last slot of each row is
    scratch that absorbs invalid entries. `push_rows` appends every class at once with validity
    masks and keeps the write positions and sizes on the device, so the training step never
    waits for the host. A class's entries fill slots 0 .. size-1 (wrapping only once full).
    """

    def __init__(self, num_classes: int, dim: int | None = None, size: int = 30000,
                 background_size: int = 50000, device: torch.device | str = "cpu") -> None:
        if min(size, background_size) < 1:
            raise ValueError(f"Memory bank sizes must be at least 1, got {size} and "
                             f"{background_size}.")
        self.dim, self.device = dim, torch.device(device)
        self.capacities = [background_size if c == 0 else size for c in range(num_classes)]
        self._capacity = torch.tensor(self.capacities, device=self.device)
        self._feats: torch.Tensor | None = None
        self._tags = torch.zeros(num_classes, max(self.capacities) + 1, dtype=torch.long,
                                 device=self.device)
        self._next = torch.zeros(num_classes, dtype=torch.long, device=self.device)
        self._size = torch.zeros(num_classes, dtype=torch.long, device=self.device)

    def __len__(self) -> int:
        return len(self.capacities)

    @property
    def sizes(self) -> torch.Tensor:
        """(K,) entries held per class, on the device."""
        return self._size

    def storage(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (K, C, D) and tags (K, C) by slot (C = largest capacity); slots at or past
        a class's size are empty. Zero-width features before the first push."""
        slots = self._tags.shape[1] - 1
        if self._feats is None:
            return torch.zeros(len(self), slots, 0, device=self.device), self._tags[:, :slots]
        return self._feats[:, :slots], self._tags[:, :slots]

    def push_rows(self, feats: torch.Tensor, tags: torch.Tensor, valid: torch.Tensor) -> None:
        """Append, per class c, the rows feats[c] (K, n, D) with tags[c] (K, n) where valid[c]
        (K, n) bool, in order; a class keeps its newest `capacity` entries."""
        classes, n = valid.shape
        if feats.shape[:2] != (classes, n) or classes != len(self):
            raise ValueError(f"Expected ({len(self)}, n, D) features with (K, n) tags and "
                             f"validity, got {tuple(feats.shape)} and {tuple(valid.shape)}.")
        self._allocate(feats.shape[2])
        capacity = self._capacity[:, None]
        order = torch.cumsum(valid.long(), 1) - 1
        count = order[:, -1:] + 1 if n else torch.zeros_like(capacity)
        keep = valid & (order >= count - capacity)  # only the newest `capacity` of this push
        slot = (self._next[:, None] + order) % capacity
        slot = torch.where(keep, slot, self._tags.shape[1] - 1)
        flat = (slot + torch.arange(classes, device=self.device)[:, None] * self._tags.shape[1])
        width = self._feats.shape[2]
        self._feats.view(-1, width).index_copy_(
            0, flat.view(-1), feats.detach().reshape(-1, width).to(self.device, torch.float32))
        self._tags.view(-1).index_copy_(0, flat.view(-1), tags.reshape(-1).to(self.device).long())
        self._next = (self._next + count[:, 0]) % self._capacity
        self._size = torch.minimum(self._size + count[:, 0], self._capacity)

    def _allocate(self, width: int) -> None:
        if self.dim is not None and width != self.dim:
            raise ValueError(f"Memory bank holds {self.dim}-d features, got {width}-d.")
        if self._feats is None:
            self._feats = torch.zeros(len(self), self._tags.shape[1], width, device=self.device)
        elif self._feats.shape[2] != width:
            raise ValueError(f"Features of width {width} pushed into a bank of width "
                             f"{self._feats.shape[2]}.")

    def push(self, class_idx: int, feats: torch.Tensor, tags: torch.Tensor | None = None) -> None:
        """Append `feats` (n, D) of class `class_idx`, dropping that class's oldest entries."""
        if feats.ndim != 2:
            raise ValueError(f"Expected features of shape (n, D), got {tuple(feats.shape)}.")
        n, classes = feats.shape[0], len(self)
        rows = feats.new_zeros(classes, n, feats.shape[1])
        rows[class_idx] = feats
        row_tags = torch.zeros(classes, n, dtype=torch.long, device=feats.device)
        if tags is not None:
            row_tags[class_idx] = tags
        valid = torch.zeros(classes, n, dtype=torch.bool, device=feats.device)
        valid[class_idx] = True
        self.push_rows(rows, row_tags, valid)

    def _ordered(self, class_idx: int, storage: torch.Tensor) -> torch.Tensor:
        size, capacity = self.count(class_idx), self.capacities[class_idx]
        if size < capacity:
            return storage[class_idx, :size]
        return torch.roll(storage[class_idx, :capacity], -int(self._next[class_idx]), dims=0)

    def get(self, class_idx: int) -> torch.Tensor:
        """Stored features (n, D) of class `class_idx`, oldest first (reads sizes on the host)."""
        feats, _ = self.storage()
        return self._ordered(class_idx, feats)

    def get_tags(self, class_idx: int) -> torch.Tensor:
        """Tags (n,) of the stored features of class `class_idx`, oldest first."""
        return self._ordered(class_idx, self.storage()[1])

    def count(self, class_idx: int) -> int:
        return int(self._size[class_idx])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{c}.{key}": value.clone() for c in range(len(self))
                for key, value in (("feats", self.get(c)), ("tags", self.get_tags(c)))}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self._next.zero_()
        self._size.zero_()
        for c in range(len(self)):
            if state[f"{c}.feats"].numel():
                self.push(c, state[f"{c}.feats"].to(self.device), state[f"{c}.tags"].to(self.device))
