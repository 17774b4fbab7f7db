"""Model registry: staged versions, activation and rollback, removal rules; a failure inside a
stage leaves the registry unchanged."""

from __future__ import annotations
from pathlib import Path


import pytest
from registry_helpers import HELD_OUT, adapt, snapshot, staging_areas
from tiny_models import save_tiny

from arcoseg.registry import store as registry_store
from arcoseg.errors import Cancelled, ModelFileError
from arcoseg.modelfile import load_metadata
from arcoseg.registry import Registry, RegistryError, VersionRef


# --------------------------------------------------------------------------------- versions


def test_staged_version_is_committed_with_parent_and_the_base_stays_byte_identical(
        registry: Registry, imported: VersionRef) -> None:
    base_folder = registry.resolve("brain@v1")
    before = snapshot(base_folder)
    ref = adapt(registry, "brain", imported)
    assert ref == VersionRef("brain", "v2") and registry.active("brain") == ref
    assert snapshot(base_folder) == before
    assert load_metadata(registry.resolve("brain")).provenance["held_out"] == HELD_OUT
    newest, oldest = registry.list()
    assert (newest["ref"], newest["kind"], newest["parent"], newest["active"]) == \
        ("brain@v2", "adapted", "brain@v1", True)
    assert newest["method"] == "arco-adapt" and newest["held_out"] == HELD_OUT
    assert (oldest["ref"], oldest["active"]) == ("brain@v1", False)


def test_adapting_into_a_new_name_records_the_parent_of_another_model(
        registry: Registry, imported: VersionRef) -> None:
    ref = adapt(registry, "patient7", imported)
    assert ref == VersionRef("patient7", "v1") and registry.active("patient7") == ref
    assert registry.show("patient7")["parent"] == "brain@v1"
    assert registry.active("brain") == imported


def test_a_first_version_saved_without_activation_leaves_the_model_without_an_active_one(
        registry: Registry, imported: VersionRef) -> None:
    """An adaptation from scratch that fails its held-out check (issue 13) is kept, not used."""
    ref = adapt(registry, "patient7", imported, activate=False)
    assert [v["active"] for v in registry.list() if v["name"] == "patient7"] == [False]
    with pytest.raises(RegistryError, match="no active version.*patient7@v1"):
        registry.resolve("patient7")
    assert registry.resolve("patient7@v1").is_dir()
    assert registry.activate("patient7", "v1") == ref and registry.active("patient7") == ref
    with pytest.raises(RegistryError, match="no earlier active version"):
        registry.rollback("patient7")


def test_a_model_without_an_active_version_names_its_versions_and_the_commands_to_use(
        registry: Registry, imported: VersionRef) -> None:
    adapt(registry, "heart", imported, activate=False)
    with pytest.raises(RegistryError) as refused:
        registry.resolve("heart")
    assert str(refused.value) == (
        "Model heart has no active version: heart@v1 was saved but not activated (see its "
        "held-out check with `arcoseg models show heart@v1`). Activate it with `arcoseg models "
        "activate heart@v1`, or name a version (heart@v1).")
    adapt(registry, "heart", imported, seed=2, activate=False)
    with pytest.raises(RegistryError) as refused:
        registry.active("heart")
    assert str(refused.value) == (
        "Model heart has no active version: heart@v1, heart@v2 were saved but none was activated "
        "(see each one's held-out check with `arcoseg models show heart@v2`). Activate one, e.g. "
        "with `arcoseg models activate heart@v2`, or name a version (heart@v2).")


def test_rollback_after_activating_a_first_version_says_there_is_nothing_earlier(
        registry: Registry, imported: VersionRef) -> None:
    adapt(registry, "heart", imported, activate=False)
    adapt(registry, "heart", imported, seed=2, activate=False)
    registry.activate("heart", "v1")
    with pytest.raises(RegistryError) as refused:
        registry.rollback("heart")
    assert str(refused.value) == (
        "Model heart has no earlier active version to roll back to (heart@v1 is active now). "
        "Activate one explicitly: arcoseg models activate heart@VERSION (versions: v2).")
    with pytest.raises(RegistryError) as refused:
        registry.rollback("brain")
    assert str(refused.value) == ("Model brain has no earlier active version to roll back to: "
                                  "brain@v1 is its only version.")
    assert registry.active("heart") == VersionRef("heart", "v1")


def test_a_parent_removed_while_a_version_is_made_from_it_is_named(
        registry: Registry, imported: VersionRef) -> None:
    """The tester's R8: the run ended with "No model named 'brain' … import it first"."""
    with pytest.raises(RegistryError, match="parent brain@v1 was removed .* not saved"):
        with registry.stage_version("brain", imported) as staged:
            registry.remove("brain", force=True)
            save_tiny(staged.path)
    assert registry.list() == []


@pytest.mark.parametrize("error", [Cancelled("stopped"), KeyboardInterrupt()])
def test_an_exception_inside_stage_leaves_the_registry_unchanged(
        registry: Registry, imported: VersionRef, home: Path, error: BaseException) -> None:
    index = (home / "registry.json").read_bytes()
    with pytest.raises(type(error)):
        with registry.stage_version("brain", imported) as staged:
            save_tiny(staged.path, seed=2)
            raise error
    assert (home / "registry.json").read_bytes() == index
    assert not (home / "models" / "brain" / "versions" / "v2").exists()
    assert staging_areas(home) == []


def test_a_stage_without_a_saved_model_is_refused(registry: Registry, home: Path) -> None:
    with pytest.raises(ModelFileError, match="No model was saved"):
        with registry.stage_version("empty"):
            pass
    assert registry.list() == [] and staging_areas(home) == []


def test_a_failed_index_write_leaves_no_version(registry: Registry, imported: VersionRef,
                                               home: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry_store, "write_text_atomic", disk_full)
    with pytest.raises(OSError):
        adapt(registry, "brain", imported)
    assert [v["ref"] for v in registry.list()] == ["brain@v1"]
    assert sorted(p.name for p in (home / "models" / "brain" / "versions").iterdir()) == ["v1"]


def test_activate_false_keeps_the_previous_version_active(registry: Registry,
                                                          imported: VersionRef) -> None:
    adapt(registry, "brain", imported, activate=False)
    assert registry.active("brain") == imported
    assert [(v["ref"], v["active"]) for v in registry.list()] == [("brain@v2", False),
                                                                  ("brain@v1", True)]


def test_activate_and_rollback_walk_back_through_the_activation_history(
        registry: Registry, imported: VersionRef) -> None:
    v2 = adapt(registry, "brain", imported)
    assert registry.activate("brain", "v1") == imported
    assert registry.rollback("brain") == v2 and registry.active("brain") == v2
    assert registry.rollback("brain") == imported
    with pytest.raises(RegistryError, match="no earlier active version"):
        registry.rollback("brain")
    with pytest.raises(RegistryError, match="no version 'v7'"):
        registry.activate("brain", "v7")


def test_remove_refuses_the_active_version_and_parents_unless_forced(
        registry: Registry, imported: VersionRef, home: Path) -> None:
    v2 = adapt(registry, "brain", imported)
    with pytest.raises(RegistryError, match="active version"):
        registry.remove("brain@v2")
    with pytest.raises(RegistryError, match="brain@v2 \\(child of brain@v1\\)"):
        registry.remove("brain@v1")
    registry.activate("brain", "v1")
    assert registry.remove("brain@v2") == [v2]
    assert not (home / "models" / "brain" / "versions" / "v2").exists()
    v3 = adapt(registry, "brain", imported)
    assert v3.version == "v3"  # ids are never reused
    assert registry.remove("brain@v3", force=True) == [v3]
    assert registry.active("brain") == imported  # back to the previously active version


def test_removing_a_version_drops_it_from_the_rollback_history(registry: Registry,
                                                                imported: VersionRef) -> None:
    adapt(registry, "brain", imported)
    for version in ("v1", "v2"):
        registry.activate("brain", version)
    adapt(registry, "brain", imported, seed=2)  # history now v1, v2, v1, v2; v3 active
    registry.remove("brain@v2")
    assert registry.rollback("brain") == imported
    with pytest.raises(RegistryError, match="no earlier active version"):
        registry.rollback("brain")


def test_removing_a_whole_model_needs_force(registry: Registry, imported: VersionRef,
                                            home: Path) -> None:
    adapt(registry, "brain", imported)
    with pytest.raises(RegistryError, match="--force"):
        registry.remove("brain")
    assert [str(r) for r in registry.remove("brain", force=True)] == ["brain@v1", "brain@v2"]
    assert registry.list() == [] and not (home / "models" / "brain").exists()


def test_removing_the_active_version_never_activates_one_adapt_left_inactive(
        registry: Registry, imported: VersionRef) -> None:
    """A hunter's finding: v2-v4 saved but not activated (failed held-out checks); removing the
    active v1 --force made v4 active without a word, and `segment brain` used it."""
    for seed in (2, 3, 4):
        adapt(registry, "brain", imported, seed=seed, activate=False)
    registry.remove("brain@v1", force=True)
    with pytest.raises(RegistryError, match="has no active version: brain@v2, brain@v3, "
                                            "brain@v4 were saved but none was activated"):
        registry.resolve("brain")


def test_a_removed_models_version_numbers_are_not_given_to_a_new_model_of_its_name(
        registry: Registry, imported: VersionRef, base: Path) -> None:
    """A hunter's finding: after `models remove base --force` and a new import as 'base', the
    new model was base@v1 again: a surviving child's parent and old scripts named it."""
    child = adapt(registry, "child", imported)
    registry.remove("brain", force=True)
    assert registry.import_model(base, name="brain") == VersionRef("brain", "v2")
    assert registry.show(str(child))["parent"] == "brain@v1"  # names no model now, not v2


def test_removing_the_active_version_falls_back_to_a_version_that_was_active_once(
        registry: Registry, imported: VersionRef, base: Path) -> None:
    """The regression hunt's finding: v2 (imported, active once) was left inactive, and the
    message spoke of a held-out check it never had."""
    registry.import_model(base, name="brain")  # brain@v2, active; v1 on the history
    registry.rollback("brain")  # v1 active, history empty
    adapt(registry, "brain", imported, seed=3, activate=False)  # v3, never active
    registry.remove("brain@v1", force=True)
    assert registry.resolve("brain").name == "v2"
