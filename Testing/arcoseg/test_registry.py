"""Model registry: versions, activation and rollback, removal rules, export/import, safety,
the inter-process lock and atomicity (a killed process leaves no partial version)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import torch
from filelock import FileLock

from arcoseg.registry import store as registry_store
from arcoseg.data.preprocess import Plan
from arcoseg.errors import Cancelled, ModelFileError, OutputError
from arcoseg.model_metadata import ModelMetadata, make_classes
from arcoseg.modelfile import load_metadata, save_model
from arcoseg.networks import NetworkConfig, build_model
from arcoseg.registry import Registry, RegistryError, VersionRef, check_name, registry_home

CONFIG = NetworkConfig(arch="unet2d", in_channels=1, num_classes=2, features=(4, 8, 16, 32, 64))
HELD_OUT = {"parent_dice": 0.61, "adapted_dice": 0.74}


def save_tiny(folder: Path, seed: int = 0, classes: tuple[str, ...] = ("background", "organ"),
              provenance: dict | None = None) -> Path:
    """A tiny 2D U-Net model folder; `seed` changes its weights."""
    torch.manual_seed(seed)
    config = NetworkConfig(**{**CONFIG.to_dict(), "num_classes": len(classes)})
    plan = Plan(dims=2, target_spacing=(1.0, 1.0, 1.0), normalization="zscore",
                label_values=list(range(len(classes))), patch_size=(32, 32))
    metadata = ModelMetadata(network=config, classes=make_classes(list(classes)),
                             plan=plan.to_dict(), provenance=provenance or {"method": "supervised"})
    save_model(folder, build_model(config), metadata)
    return folder


def adapt(registry: Registry, name: str, parent: VersionRef | None, seed: int = 1,
          activate: bool = True) -> VersionRef:
    """What `arcoseg adapt` does with the registry: save a new model into a staged version."""
    with registry.stage_version(name, parent) as staged:
        save_tiny(staged.path, seed=seed,
                  provenance={"method": "arco-adapt", "held_out": HELD_OUT})
        staged.activate = activate
    return staged.ref


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def staging_areas(home: Path) -> list[Path]:
    staging = home / "staging"
    return sorted(staging.iterdir()) if staging.is_dir() else []


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return save_tiny(tmp_path / "brain")


@pytest.fixture
def imported(registry: Registry, base: Path) -> VersionRef:
    return registry.import_model(base)


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


# --------------------------------------------------------------------------------- safety


def test_pickle_checkpoints_and_tampered_models_are_refused(
        registry: Registry, base: Path, tmp_path: Path, home: Path) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(build_model(CONFIG).state_dict(), pickled / "model.pt")
    with pytest.raises(ModelFileError, match="pickle"):
        registry.import_model(pickled)
    with pytest.raises(ModelFileError, match="pickle"):  # a torch.save file is a zip archive
        registry.import_model(pickled / "model.pt")
    checkpoint_zip = tmp_path / "checkpoint.zip"
    torch.save(build_model(CONFIG).state_dict(), checkpoint_zip)
    with pytest.raises(ModelFileError, match="torch.save checkpoint"):
        registry.import_model(checkpoint_zip)
    weights = base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="modified after saving"):
        registry.import_model(base)
    assert registry.list() == [] and staging_areas(home) == []


def test_an_export_never_replaces_an_existing_file(registry: Registry, imported: VersionRef,
                                                   tmp_path: Path) -> None:
    """The tester's R8: an existing .zip (even an unrelated file) was silently overwritten."""
    unrelated = tmp_path / "thesis.zip"
    unrelated.write_bytes(b"not a model")
    with pytest.raises(OutputError, match="thesis.zip already exists"):
        registry.export("brain", unrelated)
    assert unrelated.read_bytes() == b"not a model"


def test_adapting_from_a_folder_whose_name_is_no_model_name_says_to_give_one(
        registry: Registry, tmp_path: Path) -> None:
    """The tester's R8: adapt --model "fold/my model2" gave no hint, unlike models import."""
    from arcoseg.adapt.parent import choose_parent

    folder = save_tiny(tmp_path / "my model2")
    with pytest.raises(RegistryError, match=r"'my model2'.*Give the model a name with --name"):
        choose_parent(registry, str(folder), None, None)
    assert registry.list() == []


def test_adapting_from_a_folder_skips_a_damaged_registered_version(
        registry: Registry, imported: VersionRef, tmp_path: Path) -> None:
    """The tester's R6: looking for a registered copy of the parent folder stopped at the first
    damaged version (its error, exit 2), whatever the folder and --name."""
    from arcoseg.adapt.parent import registered_copy

    (registry.resolve("brain") / "model.json").write_text("{broken")
    assert registered_copy(registry, save_tiny(tmp_path / "other", seed=5)) is None


def test_a_zip_with_the_model_files_in_two_folders_is_refused(
        registry: Registry, imported: VersionRef, tmp_path: Path) -> None:
    """The tester's R8: a/model.json with b/model.safetensors was imported as one model."""
    archive = registry.export("brain", tmp_path / "brain.zip")
    split = tmp_path / "split.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(split, "w") as dst:
        for info in src.infolist():
            name = PurePosixPath(info.filename).name
            dst.writestr(f"{'a' if name == 'model.json' else 'b'}/{name}", src.read(info))
    with pytest.raises(ModelFileError, match=r"in different folders \(a, b\)"):
        registry.import_model(split, name="split")
    assert len(registry.list()) == 1


def test_tampered_zip_is_refused(registry: Registry, imported: VersionRef,
                                 tmp_path: Path) -> None:
    archive = registry.export("brain", tmp_path / "brain.zip")
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, data[:-1] + bytes([data[-1] ^ 0xFF])
                         if info.filename.endswith(".safetensors") else data)
    with pytest.raises(ModelFileError, match="Cannot import .*tampered.zip.*modified"):
        registry.import_model(tampered)
    assert len(registry.list()) == 1


def test_a_modified_registered_version_is_refused_wherever_it_is_used(
        registry: Registry, imported: VersionRef, tmp_path: Path) -> None:
    """Also by segment, models check, export and adapt --model (all resolve it), not only by
    show (the tester's R3: another consistent model's files ran under the version's name)."""
    save_tiny(registry.resolve("brain"), seed=7)  # overwritten behind the registry's back
    out = tmp_path / "exported"
    out.mkdir()
    for use in (registry.show, registry.resolve, lambda spec: registry.export(spec, out)):
        with pytest.raises(ModelFileError, match="modified after it was registered"):
            use("brain@v1")
    assert list(out.iterdir()) == []


def test_a_modified_version_is_never_activated_nor_rolled_back_to(
        registry: Registry, imported: VersionRef) -> None:
    """A swapped version would be refused at its next use: activating it would leave the
    panel's model unusable, so the registry keeps the active version it had."""
    adapt(registry, "brain", imported)  # v2 active, v1 in the history
    save_tiny(registry.resolve("brain@v1"), seed=7)
    with pytest.raises(ModelFileError, match="v1 was modified after it was registered as brain@v1"):
        registry.rollback("brain")
    with pytest.raises(ModelFileError, match="modified after it was registered"):
        registry.activate("brain", "v1")
    assert registry.active("brain") == VersionRef("brain", "v2")
    registry.remove("brain@v1", force=True)  # the way out the message names (v2 is its child)
    with pytest.raises(RegistryError, match="(?i)nothing to roll back|no earlier"):
        registry.rollback("brain")


def test_an_index_saved_with_a_byte_order_mark_is_read(registry: Registry,
                                                       imported: VersionRef, home: Path) -> None:
    index = home / "registry.json"
    index.write_bytes(b"\xef\xbb\xbf" + index.read_bytes())  # as Windows Notepad saves it
    assert [v["ref"] for v in registry.list()] == ["brain@v1"]


def test_an_index_naming_a_model_by_a_path_is_refused(registry: Registry, imported: VersionRef,
                                                      home: Path) -> None:
    index = json.loads((home / "registry.json").read_text())
    index["models"]["../outside"] = index["models"].pop("brain")
    (home / "registry.json").write_text(json.dumps(index))
    with pytest.raises(RegistryError, match="model name '../outside' is not a folder name"):
        registry.remove("../outside", force=True)


def test_a_registry_home_that_is_a_file_is_named_as_such(tmp_path: Path) -> None:
    home = tmp_path / "notes.txt"
    home.write_text("x")
    for use in (Registry(home).list, Registry(home).check_writable):  # adapt's check too
        with pytest.raises(RegistryError, match="notes.txt is a file, not a folder.*ARCOSEG"):
            use()


def test_a_damaged_index_gives_an_actionable_error(registry: Registry, imported: VersionRef,
                                                   home: Path) -> None:
    (home / "registry.json").write_text("{not json")
    with pytest.raises(RegistryError, match="cannot be read.*move the folder"):
        registry.list()


@pytest.mark.parametrize("edit, problem", [
    (lambda m: m["versions"][0].pop("kind"), "lacks one of version, kind"),
    (lambda m: m.update(active=None, history=["v9"]), "names version 'v9'"),
    (lambda m: m.update(active="v3"), "names version 'v3'"),
    (lambda m: m.update(versions={}), "has no list of versions"),
    # the tester's T1/T2: a version id that is a path (remove --force deleted a folder outside
    # the registry), fields list/show read (KeyError)
    (lambda m: m["versions"][0].update(version="../../../victim"), "'../../../victim' \\(not vN"),
    (lambda m: m["versions"][0].pop("summary"), "lacks one of .*summary"),
    (lambda m: m["versions"].append(dict(m["versions"][0])), "'v1' \\(not vN, or twice"),

])
def test_a_hand_edited_index_is_refused_with_what_is_wrong(registry: Registry,
                                                           imported: VersionRef, home: Path,
                                                           edit, problem) -> None:
    """The tester's R7: a version without 'kind' crashed `models list` (KeyError, exit 1); a
    history naming a missing version let rollback activate it."""
    index = json.loads((home / "registry.json").read_text())
    edit(index["models"]["brain"])
    (home / "registry.json").write_text(json.dumps(index))
    with pytest.raises(RegistryError, match=f"registry.json is damaged: .*{problem}"):
        registry.list()


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


# --------------------------------------------------------------------------------- export/import


def test_export_and_import_round_trip_as_folder_and_zip(
        registry: Registry, imported: VersionRef, tmp_path: Path) -> None:
    version = snapshot(registry.resolve("brain"))
    assert snapshot(registry.export("brain", tmp_path / "copy")) == version
    (tmp_path / "shelf").mkdir()
    assert registry.export("brain@v1", tmp_path / "shelf") == tmp_path / "shelf" / "brain-v1"
    archive = registry.export("brain", tmp_path / "brain-export.zip")
    assert zipfile.ZipFile(archive).namelist() == ["brain-v1/model.json",
                                                   "brain-v1/model.safetensors"]
    ref = registry.import_model(archive)
    assert ref == VersionRef("brain-export", "v1")
    assert snapshot(registry.resolve(str(ref))) == version
    assert registry.show(str(ref))["kind"] == "base"


def test_export_never_overwrites_a_folder(registry: Registry, imported: VersionRef,
                                          tmp_path: Path) -> None:
    (tmp_path / "shelf").mkdir()
    registry.export("brain", tmp_path / "shelf")
    with pytest.raises(OutputError, match="brain-v1 already exists"):
        registry.export("brain", tmp_path / "shelf")


# --------------------------------------------------------------------------------- processes


def test_a_busy_registry_fails_after_the_timeout_with_a_clear_message(
        imported: VersionRef, home: Path) -> None:
    with FileLock(home / "registry.lock"):
        with pytest.raises(RegistryError, match="Another ARCOSegment process is using"):
            Registry(lock_timeout=0.1).activate("brain", "v1")


_CHILD = textwrap.dedent("""
    import shutil, sys, time
    from pathlib import Path
    from arcoseg.registry import Registry
    src, go, count, mode = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    write_index = Registry._write_index
    def slow_write_index(self, index):  # a slow disk widens the read-modify-write window
        time.sleep(0.05)
        write_index(self, index)
    Registry._write_index = slow_write_index
    registry = Registry()
    for _ in range(count):
        with registry.stage_version("shared") as staged:
            shutil.copytree(src, staged.path)
            if mode == "hang":
                print("staged", flush=True)
                time.sleep(120)
""")


def _start_children(number: int, src: Path, go: Path, count: int, mode: str
                    ) -> list[subprocess.Popen]:
    """Child processes running `_CHILD`, started together, each ready once this returns."""
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, str(src), str(go), str(count),
                                  mode], stdout=subprocess.PIPE, text=True)
                for _ in range(number)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    return children


def test_two_processes_adding_versions_at_once_both_succeed_with_distinct_ids(
        registry: Registry, base: Path, tmp_path: Path, home: Path) -> None:
    go, count = tmp_path / "go", 4
    children = _start_children(2, base, go, count, "add")
    go.touch()
    for child in children:
        assert child.wait(timeout=60) == 0
    versions = registry.list()
    assert sorted(int(v["version"][1:]) for v in versions) == list(range(1, 2 * count + 1))
    assert json.loads((home / "registry.json").read_text())["models"]["shared"]["next"] == 9
    assert staging_areas(home) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_process_killed_mid_stage_leaves_no_version_and_its_staging_is_cleaned_later(
        registry: Registry, imported: VersionRef, base: Path, tmp_path: Path,
        home: Path) -> None:
    index = (home / "registry.json").read_bytes()
    go = tmp_path / "go"
    go.touch()
    [child] = _start_children(1, base, go, 1, "hang")
    assert child.stdout.readline().strip() == "staged"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert (home / "registry.json").read_bytes() == index
    assert [v["ref"] for v in registry.list()] == ["brain@v1"]
    assert not (home / "models" / "shared").exists()
    assert len(staging_areas(home)) == 1  # the dead process's files, invisible to the registry
    adapt(registry, "brain", imported)  # the next writer deletes them
    assert staging_areas(home) == []


# ------------------------------------------------- non-finite weights, archive messages, export


def test_a_model_with_non_finite_weights_is_not_imported(registry: Registry, base: Path,
                                                         home: Path) -> None:
    """Issue 17 item 11: NaN weights with a recomputed checksum imported and segmented."""
    import hashlib
    import json

    import safetensors.torch

    weights = base / "model.safetensors"
    tensors = safetensors.torch.load(weights.read_bytes())
    tensors["backbone.out_conv.conv.weight"].view(-1)[0] = float("nan")
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})
    weights.write_bytes(data)
    meta = json.loads((base / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (base / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="NaN or infinite values.*out_conv"):
        registry.import_model(base)
    assert registry.list() == [] and staging_areas(home) == []


def test_errors_about_an_archive_name_its_member_not_the_staging_copy(
        registry: Registry, base: Path, tmp_path: Path, home: Path) -> None:
    """Issue 17 item 20: a pickle inside an imported .zip named an internal staging path."""
    archive = tmp_path / "colleague.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(base / "model.json", "brain/model.json")
        zf.writestr("brain/model.safetensors", torch_save_bytes())
    with pytest.raises(ModelFileError) as err:
        registry.import_model(archive)
    message = str(err.value)
    assert f"{archive} member brain/model.safetensors is a zip archive" in message
    assert str(home) not in message and "staging" not in message


def torch_save_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(build_model(CONFIG).state_dict(), buffer)
    return buffer.getvalue()


def test_export_holds_the_model_and_history_only_when_asked(
        registry: Registry, base: Path, tmp_path: Path) -> None:
    """Issue 17 item 22: a trained model's export packed its whole training/ folder."""
    (base / "training").mkdir()
    (base / "training" / "metrics.jsonl").write_text('{"iteration": 1}\n')
    (base / "training" / "checkpoint.safetensors").write_bytes(b"x" * 100_000)
    (base / "training" / "checkpoint.json").write_text("{}")
    archive = registry.export(base, tmp_path / "brain.zip")
    assert zipfile.ZipFile(archive).namelist() == ["brain/model.json", "brain/model.safetensors"]
    assert archive.stat().st_size < (base / "model.safetensors").stat().st_size + 5_000
    with_history = registry.export(base, tmp_path / "full.zip", with_history=True)
    assert zipfile.ZipFile(with_history).namelist() == [
        "brain/model.json", "brain/model.safetensors", "brain/training/metrics.jsonl"]
    folder = registry.export(base, tmp_path / "copy")
    assert sorted(p.name for p in folder.rglob("*")) == ["model.json", "model.safetensors"]
    assert registry.import_model(with_history) == VersionRef("full", "v1")


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
