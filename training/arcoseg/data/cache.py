"""The cache of preprocessed cases: `arcoseg train` preprocesses a dataset once per plan.

An entry per case and plan (a folder of .npy arrays and case.json, written last, so a folder
without it is incomplete and recomputed); the key hashes the plan's preprocessing settings, the
label mapping and each file's path, size and modification time.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from arcoseg.data.dataset import Case, DatasetInfo
from arcoseg.data.plan import Plan
from arcoseg.data.preprocess import PreprocessedCase, preprocess_case
from arcoseg.errors import Cancelled, OutputError
from arcoseg.fileutil import atomic_path, write_text_atomic
from arcoseg.progress import Reporter

CACHE_VERSION = 2  # 2: voxels beyond the input's outermost centres extrapolated (not 0)


def default_cache_dir() -> Path:
    """`$ARCOSEG_CACHE`, else ~/.cache/arcoseg/preprocessed."""
    env = os.environ.get("ARCOSEG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "arcoseg" / "preprocessed"


def load_cases(dataset: DatasetInfo, cases: list[Case], plan: Plan,
               cache_dir: str | os.PathLike | None = None,
               reporter: Reporter | None = None,
               unwritable: set[Path] | None = None,
               should_stop: Callable[[], bool] = lambda: False) -> list[PreprocessedCase]:
    """Preprocess `cases`, reusing cached arrays when the plan and the files are unchanged.

    The cache key hashes the plan, the label mapping and each file's path, size, modification
    and change times. A cache that cannot be written only costs speed: a log line, then no
    more tries there; `unwritable` (cache folders found so) carries that over the calls of one
    run (a training's labelled, unlabelled and validation cases: said once, not three times).
    Cancelled before the next case once `should_stop()` is true (a case of a real CT takes
    minutes on a cold cache: Ctrl-C waited for every case).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    unwritable = set() if unwritable is None else unwritable
    out = []
    for i, case in enumerate(cases, start=1):
        if should_stop():
            raise Cancelled(f"Stopped while preparing the data ({i - 1} of {len(cases)} cases "
                            "done, kept in the cache); no training ran, nothing to resume.")
        entry = cache / _cache_key(case, plan, dataset)
        loaded = _read_cache(entry, case.id)
        if loaded is None:
            loaded = preprocess_case(case, plan, dataset)
            try:
                if cache not in unwritable:
                    _write_cache(entry, loaded)
            except (OSError, OutputError) as err:
                _cache_failed(cache, entry, err, unwritable, reporter)
        out.append(loaded)
        if reporter is not None:
            reporter.progress(i, len(cases), "preprocessing")
    return out


def _cache_failed(cache: Path, entry: Path, err: Exception, unwritable: set[Path],
                  reporter: Reporter | None) -> None:
    """Report a cache write that failed: this one entry when its name is too long for the file
    system (a long case id), else the whole folder (not writable, full disk, quota: not tried
    again in this run)."""
    entry_only = isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG
    if not entry_only:
        unwritable.add(cache)
    if reporter is not None:
        reporter.log(f"Could not write the preprocessing cache {entry} ({err}); continuing "
                     + ("without caching this case." if entry_only else
                        "without it. Set ARCOSEG_CACHE to a writable folder."))


def _cache_key(case: Case, plan: Plan, dataset: DatasetInfo) -> str:
    files = []
    for path in [*case.images, *([case.label] if case.label else [])]:
        stat = Path(path).stat()
        # the change time too: a file rewritten with its size and modification time kept
        # (cp -p, tar, rsync -t) is read again
        files.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns,
                      stat.st_ctime_ns])
    settings = {k: v for k, v in plan.to_dict().items() if k != "patch_size"}  # no effect here
    payload = json.dumps({"version": CACHE_VERSION, "plan": settings, "files": files,
                          "mapping": sorted(dataset.label_mapping().items())}, sort_keys=True)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:24]
    return f"{case.id}-{digest}"


def _read_cache(entry: Path, case_id: str) -> PreprocessedCase | None:
    """The cached case, or None if absent or unreadable (then it is simply recomputed)."""
    meta_path = entry / "case.json"  # written last: its presence marks a complete entry
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        image = np.load(entry / "image.npy", allow_pickle=False)
        label = np.load(entry / "label.npy", allow_pickle=False) if meta["has_label"] else None
        return PreprocessedCase(case_id, image, label, tuple(meta["spacing_zyx"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(entry: Path, case: PreprocessedCase) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    arrays = {"image.npy": case.image, "label.npy": case.label}
    for name, array in arrays.items():
        if array is not None:
            with atomic_path(entry / name) as tmp, open(tmp, "wb") as f:
                np.save(f, array, allow_pickle=False)
    meta = {"case_id": case.case_id, "has_label": case.label is not None,
            "spacing_zyx": list(case.spacing_zyx)}
    write_text_atomic(entry / "case.json", json.dumps(meta))
