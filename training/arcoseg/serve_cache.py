"""Models kept loaded on their device between `segment` requests of `arcoseg serve`.

Outside the worker (one-shot commands) no cache is installed and `load_model` is
`arcoseg.modelfile.load_model`. Inside it a model is reused only while its folder's files are
unchanged (path, size, modification and change times and inode of model.json and
model.safetensors): a new registry version is another folder, and a folder rewritten in place is
loaded afresh. The least recently used model is evicted beyond `capacity`, when a GPU's free
memory runs short, and after a failed request (arcoseg.serve_lanes).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from arcoseg.constants import MODEL_FILES

_CACHE: ModelCache | None = None
MIN_FREE_GPU_FRACTION = 0.2  # evict while less than this share of the GPU's memory is free


class ModelCache:
    """LRU of (model, metadata) keyed by model folder and device, checked against file stats."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._models: OrderedDict[tuple[str, str], tuple[tuple, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.loads = 0

    def load(self, model_dir: str | os.PathLike, device: Any) -> tuple[Any, Any]:
        """(model, metadata) like modelfile.load_model, loaded once per unchanged folder."""
        from arcoseg.modelfile import load_model
        from arcoseg.networks.fused import keep_inference_network

        folder = Path(model_dir).resolve()
        key, stamp = (str(folder), str(device)), _stamp(folder)
        with self._lock:
            cached = self._models.get(key)
            if cached is not None and cached[0] == stamp:
                self._models.move_to_end(key)
                self.hits += 1
                return cached[1]
            self._models.pop(key, None)
        loaded = load_model(folder, device=device)
        keep_inference_network(loaded[0])  # a cached model's weights never change
        self.loads += 1
        if self.capacity > 0:
            with self._lock:
                self._models[key] = (stamp, loaded)
                while len(self._models) > self.capacity or (
                        len(self._models) > 1 and _gpu_memory_short(device)):
                    self._models.popitem(last=False)
        return loaded

    def clear(self) -> None:
        """Forget every model (and give cached GPU memory back to the driver)."""
        with self._lock:
            self._models.clear()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _stamp(folder: Path) -> tuple:
    stamp = []
    for name in MODEL_FILES:
        try:
            st = (folder / name).stat()
        except OSError:
            return ()  # missing files: never a hit; load_model reports the problem
        # ctime too: a copy that keeps the modification time (cp -p, tar, unzip) changes it
        stamp.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(stamp)


def _gpu_memory_short(device: Any) -> bool:
    if getattr(device, "type", str(device)) != "cuda":
        return False
    import torch

    free, total = torch.cuda.mem_get_info(device)
    return free < MIN_FREE_GPU_FRACTION * total


def install_cache(capacity: int) -> ModelCache:
    """Use a cache of `capacity` models from now on (the worker calls this once)."""
    global _CACHE
    _CACHE = ModelCache(capacity)
    return _CACHE


def clear_cache() -> None:
    """Empty the installed cache, if any."""
    if _CACHE is not None:
        _CACHE.clear()


def load_model(model_dir: str | os.PathLike, device: Any = "cpu") -> tuple[Any, Any]:
    """modelfile.load_model, through the worker's cache when one is installed."""
    if _CACHE is not None:
        return _CACHE.load(model_dir, device)
    from arcoseg.modelfile import load_model as load_uncached

    return load_uncached(model_dir, device=device)
