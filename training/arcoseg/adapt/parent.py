"""The model an adaptation starts from: a registry version, a model folder (imported once) or
nothing (from scratch, with the classes the user names)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from arcoseg.constants import BACKGROUND
from arcoseg.errors import ArcosegError
from arcoseg.fileutil import expand_user
from arcoseg.model_metadata import ModelMetadata
from arcoseg.modelfile import load_metadata, load_model
from arcoseg.networks.model import SegmentationModel
from arcoseg.registry import Registry, VersionRef


@dataclass
class Parent:
    """The model an adaptation starts from (None fields: from scratch), and the registry name
    the adapted version goes to."""

    name: str  # the adapted model's registry name
    ref: VersionRef | None
    model: SegmentationModel | None
    metadata: ModelMetadata | None
    class_names: list[str]
    class_values: list[int]


def choose_parent(registry: Registry, model: str | None, classes: list[str] | None,
                  name: str | None) -> Parent:
    """Resolve --model (registry name or folder, imported if outside the registry) or
    --from-scratch --classes; `name` is the adapted model's registry name (--name; default
    the parent's, from scratch "adapted").

    Raises ArcosegError when neither is given, RegistryError for a bad name (or one differing
    from another model's only in case) and ModelFileError when the model `name` already exists
    with other classes: all before any training.
    """
    if name is not None:
        registry.check_new_name(name)  # before a folder is imported under it
    if model is None:
        if not classes:
            raise ArcosegError("Give --model NAME|PATH to adapt, or --from-scratch --classes A,B.")
        names = [BACKGROUND, *classes]
        parent = Parent("adapted" if name is None else name, None, None, None, names,
                        list(range(len(names))))
    else:
        ref = registry.lookup(model)
        if ref is None:  # a folder outside the registry becomes a base model first (once)
            folder = expand_user(model)
            # named as `models import` names it (with its --name hint for an invalid name)
            ref = registered_copy(registry, folder) or registry.import_model(folder, name=name)
        network, metadata = load_model(registry.resolve(str(ref)))
        parent = Parent(ref.name if name is None else name, ref, network, metadata,
                        metadata.class_names, [int(c["value"]) for c in metadata.classes])
    registry.check_can_add(parent.name, parent.class_names)
    return parent


def registered_copy(registry: Registry, folder: Path) -> VersionRef | None:
    """A registered version that is the model in `folder`: the same weights, network, classes
    and plan (so adapting repeatedly from one folder chains versions instead of importing it
    again; a copy whose model.json was edited, e.g. classes renamed, is a model of its own)."""
    wanted = _identity(load_metadata(folder))
    for version in registry.list():
        ref = VersionRef(version["name"], version["version"])
        try:
            if _identity(load_metadata(registry.resolve(str(ref)))) == wanted:
                return ref
        except ArcosegError:  # a damaged version is not this model (and not this run's concern)
            continue
    return None


def _identity(metadata: ModelMetadata) -> tuple:
    """What makes two model files the same model (provenance aside)."""
    return (metadata.weights_sha256, metadata.network, metadata.classes, metadata.plan)
