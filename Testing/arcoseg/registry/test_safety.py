"""Model registry: what is never imported or used (pickles, tampered or non-finite weights,
modified versions, damaged or hand-edited indexes) and the messages that say so."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import torch
from registry_helpers import adapt, staging_areas
from tiny_models import CONFIG, save_tiny

from arcoseg.errors import ModelFileError, OutputError
from arcoseg.networks import build_model
from arcoseg.registry import Registry, RegistryError, VersionRef


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
