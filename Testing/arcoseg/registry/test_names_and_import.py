"""Model registry: where it lives, importing models, model names and version references."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry_helpers import adapt, snapshot
from tiny_models import save_tiny

from arcoseg.errors import ModelFileError
from arcoseg.registry import Registry, RegistryError, VersionRef, check_name, registry_home


# --------------------------------------------------------------------------------- home, import


def test_home_is_ARCOSEG_HOME_else_dot_arcoseg_in_the_user_home(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry_home() == home and Registry().home == home
    monkeypatch.delenv("ARCOSEG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert registry_home() == tmp_path / "user" / ".arcoseg"


def test_a_version_folder_of_another_registry_is_imported_under_its_model_name(
        registry: Registry, tmp_path: Path) -> None:
    """The tester's R8: importing OTHER/models/liver/versions/v1 without --name made 'v1'."""
    version = save_tiny(tmp_path / "other" / "models" / "liver" / "versions" / "v1")
    assert registry.import_model(version) == VersionRef("liver", "v1")
    # the tester's T3: a name taken from the path never adds a version to a registered model
    again = save_tiny(tmp_path / "third" / "models" / "liver" / "versions" / "v7", seed=3)
    with pytest.raises(RegistryError, match="'liver' is already registered.*--name liver"):
        registry.import_model(again)
    assert registry.import_model(again, name="liver") == VersionRef("liver", "v2")


def test_a_model_without_a_plan_is_not_imported(registry: Registry, tmp_path: Path) -> None:
    """The tester's R5: a model.json with "plan": {} was imported, then could not segment."""
    folder = save_tiny(tmp_path / "planless")
    data = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**data, "plan": {}}))
    with pytest.raises(ModelFileError, match=r"Cannot import .*planless: model.json has an "
                                             r"empty 'plan'"):
        registry.import_model(folder)
    assert registry.list() == []


def test_import_adds_an_active_base_version_named_after_the_folder(
        registry: Registry, base: Path, home: Path) -> None:
    ref = registry.import_model(base)
    assert ref == VersionRef("brain", "v1") and str(ref) == "brain@v1"
    assert snapshot(home / "models" / "brain" / "versions" / "v1") == snapshot(base)
    [entry] = registry.list()
    assert entry["ref"] == "brain@v1" and entry["active"] and entry["kind"] == "base"
    assert entry["parent"] is None and entry["classes"] == ["background", "organ"]
    assert entry["method"] == "supervised" and entry["source"] == str(base.resolve())
    shown = registry.show("brain")
    assert shown["registered"] and shown["kind"] == "base" and shown["parameters"] > 0
    assert [c["name"] for c in shown["classes"]] == ["background", "organ"]


def test_import_copies_only_the_model_files_of_a_training_folder(
        registry: Registry, base: Path) -> None:
    (base / "training").mkdir()
    (base / "training" / "checkpoint.safetensors").write_bytes(b"x" * 10)
    folder = registry.resolve(str(registry.import_model(base, name="trained")))
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]


def test_resolve_accepts_name_name_at_version_and_folder_path(
        registry: Registry, imported: VersionRef, base: Path, home: Path) -> None:
    v2 = adapt(registry, "brain", imported, activate=False)
    versions = home / "models" / "brain" / "versions"
    assert registry.resolve("brain") == versions / "v1"  # the active version
    assert registry.resolve("brain@v2") == versions / "v2"
    assert registry.resolve(str(base)) == base and registry.lookup(str(base)) is None
    assert registry.lookup(versions / "v2") == v2 == registry.lookup("brain@v2")
    for unknown, message in (("liver", "neither a model in the registry"),
                             ("brain@v9", "has no version 'v9'")):
        with pytest.raises(RegistryError, match=message):
            registry.resolve(unknown)


@pytest.mark.parametrize("spec", ["brain@", "@v1", "brain@v1@v2"])
def test_a_malformed_version_reference_is_refused_everywhere(
        registry: Registry, imported: VersionRef, tmp_path: Path, spec: str) -> None:
    # 'brain@' never reads as 'brain': removing it would remove the whole model
    example = "NAME@v1" if spec.startswith("@") else "brain@v1"
    message = (f"Malformed model version {spec!r}: write NAME@VERSION with a name, one '@' and "
               f"a version (e.g. {example!r}). Run `arcoseg models list` to see the versions.")
    for use in (registry.resolve, registry.lookup, registry.show,
                lambda s: registry.export(s, tmp_path / "out"),
                lambda s: registry.remove(s, force=True)):
        with pytest.raises(RegistryError) as refused:
            use(spec)
        assert str(refused.value) == message
    assert [v["ref"] for v in registry.list()] == ["brain@v1"]
    assert not (tmp_path / "out").exists()


def test_import_into_an_existing_name_adds_an_active_version_with_the_same_classes(
        registry: Registry, imported: VersionRef, tmp_path: Path) -> None:
    ref = registry.import_model(save_tiny(tmp_path / "newer", seed=3), name="brain")
    assert ref == VersionRef("brain", "v2") and registry.active("brain") == ref
    other = save_tiny(tmp_path / "other", classes=("background", "tumour"))
    with pytest.raises(ModelFileError, match="classes"):
        registry.import_model(other, name="brain")
    assert len(registry.list()) == 2


@pytest.mark.parametrize("name", ["", "a b", "../up", ".hidden", "a/b", "x" * 101, "é",
                                  "-rf", "--help", "CON", "nul", "com1.v2", "LPT9"])
def test_invalid_model_names_are_refused(registry: Registry, base: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="Invalid model name"):
        registry.import_model(base, name=name)
    with pytest.raises(RegistryError, match="Invalid model name"):
        with registry.stage_version(name):
            pass


@pytest.mark.parametrize("name", ["_brain", "brain-mri.v2", "CONsole", "com10", "9"])
def test_names_near_the_refused_ones_are_valid(name: str) -> None:
    assert check_name(name) == name


def test_a_name_differing_from_a_model_only_in_case_is_refused(
        registry: Registry, imported: VersionRef, base: Path) -> None:
    # on Windows and macOS "Brain" and "brain" would be one folder
    with pytest.raises(RegistryError, match="only in upper/lower case.*'brain'"):
        registry.import_model(base, name="Brain")
    with pytest.raises(RegistryError, match="only in upper/lower case"):
        registry.check_can_add("BRAIN", ["background", "organ"])
    assert [v["ref"] for v in registry.list()] == ["brain@v1"]


@pytest.mark.parametrize("name", ["heart.", "abc.", "abc..", "v1.2."])
def test_a_new_name_may_not_end_in_a_dot(registry: Registry, base: Path, name: str) -> None:
    # Windows drops trailing dots: 'heart.' would be the folder 'heart'
    message = (f"Invalid model name {name!r}: a name may not end in '.', since Windows drops "
               "trailing dots and the model's folder would be "
               f"{name.rstrip('.')!r} there. Drop the trailing dot or end the name in a letter, "
               "digit, '_' or '-'.")
    with pytest.raises(RegistryError) as refused:
        registry.import_model(base, name=name)
    assert str(refused.value) == message
    with pytest.raises(RegistryError, match="may not end in '.'"):
        with registry.stage_version(name):
            pass
    assert registry.list() == []


def test_a_name_windows_folds_onto_an_existing_model_is_refused_and_legacy_ones_stay_usable(
        registry: Registry, imported: VersionRef, base: Path) -> None:
    # an index written when 'brain.' was still accepted: on Windows it is the folder 'brain'
    index = json.loads(registry.index_path.read_text())
    index["models"]["brain."] = index["models"].pop("brain")
    registry.index_path.write_text(json.dumps(index))
    for twin in ("brain", "BRAIN"):
        with pytest.raises(RegistryError) as refused:
            registry.import_model(base, name=twin)
        assert str(refused.value) == (
            f"Model name {twin!r} differs from the existing model 'brain.' only in trailing dots "
            "or spaces (or case); Windows drops those, so both would be one folder there. Use "
            "'brain.' (--name) or a different name.")
        with pytest.raises(RegistryError, match="only in trailing dots"):
            registry.check_can_add(twin, ["background", "organ"])
    registry.check_new_name("brain.")  # the registered model keeps its name
    assert registry.active("brain.") == VersionRef("brain.", "v1")
    assert [v["ref"] for v in registry.list()] == ["brain.@v1"]


def test_a_folder_name_that_is_no_valid_name_asks_for_one(registry: Registry,
                                                          tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="--name"):
        registry.import_model(save_tiny(tmp_path / "my model"))


def test_a_model_registered_before_the_name_rules_stays_usable(registry: Registry,
                                                              imported: VersionRef) -> None:
    # an index written when 'CON' was still accepted: the model can be listed, extended, removed
    index = json.loads(registry.index_path.read_text())
    index["models"]["CON"] = index["models"].pop("brain")
    registry.index_path.write_text(json.dumps(index))
    (registry.models_dir / "brain").rename(registry.models_dir / "CON")
    registry.check_new_name("CON")
    assert registry.active("CON") == VersionRef("CON", "v1")
    assert registry.remove("CON", force=True) == [VersionRef("CON", "v1")]
    with pytest.raises(RegistryError, match="Windows reserves"):
        registry.check_new_name("CON")
