"""The rules for dataset.json's values (`data.dataset` reads the layouts): required keys, the
labels map, channel names, and the case ids of 'splits' and 'labelled_order'. Every refusal is an
InputError naming dataset.json and what to change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from arcoseg.constants import IGNORE_NAME
from arcoseg.errors import InputError, ModelFileError
from arcoseg.io.images import MAX_LABEL_VALUE
from arcoseg.model_metadata import check_class_names

if TYPE_CHECKING:
    from arcoseg.data.dataset import Case


def require_key(meta: dict, key: str, kind: type, json_path: Path) -> Any:
    """meta[key], refused naming `json_path` when missing or not of JSON type `kind`."""
    if key not in meta:
        raise InputError(f"{json_path} is missing the key '{key}'. Add it.")
    if not isinstance(meta[key], kind):
        raise InputError(f"{json_path}: '{key}' must be a JSON {kind.__name__}, "
                         f"not {type(meta[key]).__name__}.")
    return meta[key]


def check_labels(labels: dict[str, Any], json_path: Path) -> dict[str, int]:
    """`labels` (name -> value) checked: names -> values, not the other way round; one integer
    0..MAX_LABEL_VALUE each, distinct; valid class names; background = 0 and a class."""
    for name, value in labels.items():
        if isinstance(value, str) and name.isdigit():  # {"0": "background", ...}: flipped
            raise InputError(f"{json_path}: 'labels' maps values to names ('{name}': "
                             f"'{value}'); nnU-Net v2 maps names to values: write "
                             f"'{value}': {name}.")
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{json_path}: label '{name}' has value {value!r}; only one integer "
                             "per label is supported (no region-based labels).")
        if not 0 <= value <= MAX_LABEL_VALUE:
            raise InputError(f"{json_path}: label '{name}' = {value} is outside "
                             f"0..{MAX_LABEL_VALUE}.")
    if len(set(labels.values())) != len(labels):
        raise InputError(f"{json_path}: two labels share a value in 'labels'.")
    try:  # the names a model made from this dataset will hold: refused now, not at its save
        check_class_names([n for n in labels if n != IGNORE_NAME])
    except ModelFileError as err:
        raise InputError(f"{json_path}: 'labels': {err} Rename one.") from err
    values = [v for n, v in labels.items() if n != IGNORE_NAME]
    if 0 not in values or len(values) < 2:
        raise InputError(f"{json_path}: 'labels' needs background = 0 and at least one class.")
    return labels


def channel_names(meta: dict, json_path: Path, keys: tuple[str, str]) -> dict[str, str]:
    """The first of `keys` present, as {"0": name, "1": name, ...} in index order."""
    for key in keys:
        if key in meta:
            channels = meta[key]
            if (not isinstance(channels, dict) or not channels
                    or set(channels) != {str(i) for i in range(len(channels))}):
                raise InputError(f"{json_path}: '{key}' must map channel indices '0', '1', ... "
                                 "to names.")
            return {k: str(channels[k]) for k in sorted(channels, key=int)}
    raise InputError(f"{json_path} is missing the key '{keys[0]}'. Add it, e.g. "
                     '{"0": "MRI"} or {"0": "CT"}.')


def matching_cases(entry: str, cases: Iterable[Case]) -> list[Case]:
    """The cases whose id is `entry` or starts with `entry` + '_' (a patient's frames)."""
    return [c for c in cases if c.id == entry or c.id.startswith(entry + "_")]


def check_ids(ids: Any, cases: list[Case], json_path: Path, key: str) -> list[str] | None:
    """dataset.json's `key` (None if absent): a list of ids, each matching a case."""
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError(f"{json_path}: '{key}' must be a list of case ids.")
    check_distinct_ids(ids, f"{json_path}: '{key}'")
    unknown = [i for i in ids if not matching_cases(i, cases)]
    if unknown:
        raise InputError(f"{json_path}: '{key}' references unknown case(s) "
                         f"{', '.join(unknown[:10])}. Fix the ids or add the cases.")
    return list(ids)


def resolve_splits(splits: Any, cases: list[Case], json_path: Path
                   ) -> dict[str, list[str]] | None:
    """dataset.json's 'splits' as {split: sorted case ids} (None if absent); a case in both
    train and val is refused."""
    if splits is None:
        return None
    if not isinstance(splits, dict):
        raise InputError(f"{json_path}: 'splits' must map split names to lists of case ids.")
    resolved = {}
    for name, ids in splits.items():
        checked = check_ids(ids, cases, json_path, f"splits.{name}") or []
        resolved[str(name)] = sorted({c.id for i in checked for c in matching_cases(i, cases)})
    shared = set(resolved.get("train", [])) & set(resolved.get("val", []))
    if shared:
        raise InputError(f"{json_path}: case(s) {', '.join(sorted(shared)[:10])} are in both "
                         "'splits.train' and 'splits.val'; a validation case must not be trained "
                         "on.")
    return resolved


def check_distinct_ids(ids: list[str], source: str) -> None:
    """InputError naming an id `source` lists twice: `--labelled N` took the first N entries,
    then dropped the repeat, and trained on fewer cases than asked, exit 0."""
    seen: set[str] = set()
    for case_id in ids:
        if case_id in seen:
            raise InputError(f"{source} lists case id {case_id!r} twice. List each case once.")
        seen.add(case_id)


def read_dataset_json(json_path: Path) -> dict[str, Any]:
    """The JSON object in `json_path`; InputError if it is not valid JSON or not an object."""
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{json_path} is not valid JSON: {err}. Fix the file.") from err
    except OSError as err:
        raise InputError(f"Cannot read {json_path}: {err.strerror or err}.") from err
    if not isinstance(meta, dict):
        raise InputError(f"{json_path} must hold a JSON object.")
    return meta


def dataset_labels(meta: dict[str, Any], json_path: Path) -> dict[str, int]:
    """dataset.json's labels as name -> value (`check_labels`): nnU-Net v2 writes them so, the
    Decathlon layout (a 'training' list) value -> name."""
    raw = require_key(meta, "labels", dict, json_path)
    if "training" not in meta:
        return check_labels(dict(raw), json_path)
    try:
        labels = {str(name): int(value) for value, name in raw.items()}
    except (TypeError, ValueError) as err:
        raise InputError(f"{json_path}: 'labels' must map integer values to names in the "
                         'Decathlon format, e.g. {"0": "background", "1": "liver"}.') from err
    if len(labels) != len(raw):  # two values with one name: merged into one above
        names = [str(name) for name in raw.values()]
        twice = sorted({name for name in names if names.count(name) > 1})
        raise InputError(f"{json_path}: 'labels' gives the name(s) {twice} to more than one "
                         "value. Give each value its own name.")
    return check_labels(labels, json_path)
