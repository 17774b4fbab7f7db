"""The training loop: a model folder with logs and curves, validation-selected, exactly resumable."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from arcoseg.data.synthetic import make_phantom_dataset
from arcoseg.errors import ArcosegError, Cancelled, InputError
from arcoseg.progress import Reporter
from arcoseg.networks.model import DEFAULT_HEAD_STRIDE
from arcoseg.train.options import TrainOptions
from arcoseg.train.resume import RUN_LOCK
from arcoseg.train.state import checkpoint_entry
from arcoseg.train.run import train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_phantom_dataset(tmp_path_factory.mktemp("ds") / "Phantom", num_cases=5,
                                shape_zyx=(6, 32, 32), val_cases=1)


def _options(tmp_path, **kw):
    base = dict(dims=2, iterations=6, batch=2, patch=(32, 32), val_every=3, checkpoint_every=3,
                log_every=1, device="cpu", seed=1, cache_dir=tmp_path / "cache")
    return TrainOptions(**(base | kw))


def test_training_writes_model_log_curves_and_provenance(dataset, tmp_path):
    out = tmp_path / "model"
    result = train(dataset, _options(tmp_path, labelled=2), out, Reporter(quiet=True))
    assert (out / "model.safetensors").is_file() and (out / "model.json").is_file()
    meta = json.loads((out / "model.json").read_text())
    assert [c["name"] for c in meta["classes"]] == ["background", "class1", "class2"]
    assert len(meta["provenance"]["labelled_cases"]) == 2
    assert meta["provenance"]["method"] == "supervised"
    records = [json.loads(line) for line in (out / "training/metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert "val_dice" in records[2] and "val_dice" in records[5]
    assert (out / "training/curves.png").read_bytes()[:4] == b"\x89PNG"
    assert result["best_iteration"] in (3, 6)


def test_interrupted_run_resumes_to_the_same_weights(dataset, tmp_path):
    straight = tmp_path / "straight"
    train(dataset, _options(tmp_path), straight, Reporter(quiet=True))
    interrupted = tmp_path / "interrupted"
    log = interrupted / "training/metrics.jsonl"

    def after_four_iterations() -> bool:  # log_every=1: one record per iteration
        return log.exists() and len(log.read_text().splitlines()) >= 4

    with pytest.raises(Cancelled, match="--resume"):
        train(dataset, _options(tmp_path), interrupted, Reporter(quiet=True),
              should_stop=after_four_iterations)
    train(dataset, _options(tmp_path), interrupted, Reporter(quiet=True), resume=True)
    a = load_file(str(straight / "training/checkpoint.safetensors"))
    b = load_file(str(interrupted / "training/checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    lines = (interrupted / "training/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_a_stop_while_the_data_is_prepared_ends_at_once_and_leaves_nothing_to_resume(
        dataset, tmp_path):
    """A hunter's finding: Ctrl-C waited for every case to be preprocessed (minutes each on a
    cold cache), then wrote an iteration-0 checkpoint that tied the folder to its options."""
    out = tmp_path / "model"
    with pytest.raises(Cancelled, match="Stopped while preparing the data \\(0 of"):
        train(dataset, _options(tmp_path, cache_dir=tmp_path / "fresh"), out,
              Reporter(quiet=True), should_stop=lambda: True)
    assert not (out / "training" / "checkpoint.json").exists()
    train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True))
    assert (out / "model.safetensors").is_file()  # the folder is free for a new run


def test_same_seed_gives_same_weights(dataset, tmp_path):
    for name in ("a", "b"):
        train(dataset, _options(tmp_path, iterations=2, val_every=2), tmp_path / name,
              Reporter(quiet=True))
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_not_overwritten_without_resume(dataset, tmp_path):
    out = tmp_path / "model"
    train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True))
    with pytest.raises(ArcosegError, match="--resume"):
        train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True))


def test_a_folder_holding_a_model_is_not_trained_over(dataset, tmp_path):
    """The tester's finding 1 (HIGH): train --out into a registered version's folder (or any
    model folder) replaced its weights with exit 0."""
    out = tmp_path / "model"
    train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True))
    (out / "training" / "checkpoint.json").unlink()  # a model folder as the registry keeps it
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(ArcosegError, match="already holds a model .*model.json, "
                                           "model.safetensors.*another --out"):
        train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True))
    with pytest.raises(ArcosegError, match="holds a model but no training checkpoint .*another "
                                           "--out"):  # not 'start without --resume': refused
        train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True),
              resume=True)
    assert (out / "model.safetensors").read_bytes() == weights


def test_a_folder_another_run_is_writing_is_refused_and_free_again_once_it_died(dataset,
                                                                               tmp_path):
    """A hunter's finding (HIGH): two trainings into one --out (or a --resume while the run
    still went on) both exited 0 and left one run's weights with the other's log and options."""
    import subprocess
    import sys

    out = tmp_path / "model"
    holder = subprocess.Popen(  # another run, before its first checkpoint: only its lock
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "lock = FileLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
         "time.sleep(120)",
         str(out / RUN_LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        (out / RUN_LOCK).parent.mkdir(parents=True)
        assert holder.stdout.readline().strip() == "held"
        for resume in (False, True):
            with pytest.raises(ArcosegError, match="is being written by another training run"):
                train(dataset, _options(tmp_path, iterations=1, val_every=1), out,
                      Reporter(quiet=True), resume=resume)
        assert sorted(p.name for p in out.rglob("*")) == [".run.lock", "training"]  # nothing else
    finally:
        holder.kill()
        holder.wait()
    train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True))
    assert (out / "model.safetensors").is_file()  # a dead run's lock holds nothing


def test_resume_on_other_data_is_refused_before_training(dataset, tmp_path):
    """The tester's finding 2: another dataset with the same classes trained on silently, one
    with other classes failed only when the model was saved."""
    out = tmp_path / "model"
    train(dataset, _options(tmp_path, iterations=1, val_every=1, labelled=2), out,
          Reporter(quiet=True))
    other = make_phantom_dataset(tmp_path / "Other", num_cases=5, shape_zyx=(6, 32, 32),
                                 val_cases=1, num_classes=2)
    with pytest.raises(ArcosegError, match=r"other data \(classes \['background', 'class1', "
                                           r"'class2'\] then, \['background', 'class1'\] now"):
        train(other, _options(tmp_path, iterations=2, val_every=1, labelled=2), out,
              Reporter(quiet=True), resume=True)


def test_resume_with_other_options_is_refused_before_any_data_is_read(dataset, tmp_path,
                                                                     monkeypatch):
    """A hunter's finding: the refusal came after the whole dataset was preprocessed (minutes
    to hours on a cold cache)."""
    from arcoseg.train import run

    out = tmp_path / "model"
    train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True))

    def not_now(*args, **kwargs):
        raise AssertionError("data read before the options were compared")

    monkeypatch.setattr(run, "prepare_data", not_now)
    with pytest.raises(ArcosegError, match=r"options differ from the interrupted run \(lr\)"):
        train(dataset, _options(tmp_path, iterations=2, val_every=1, lr=0.5), out,
              Reporter(quiet=True), resume=True)


def test_resume_after_the_validation_split_changed_is_refused(dataset, tmp_path):
    """A hunter's finding: a validation case moved to train (the unlabelled pool grew, the best
    model was then chosen on other cases) was resumed without a word, exit 0."""
    root = tmp_path / "Phantom"
    shutil.copytree(dataset, root)
    out = tmp_path / "model"
    train(root, _options(tmp_path, iterations=1, val_every=1, labelled=2), out,
          Reporter(quiet=True))
    info = json.loads((root / "dataset.json").read_text())
    [moved] = info["splits"]["val"]
    info["splits"] = {"train": info["splits"]["train"] + [moved], "val": []}
    (root / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(ArcosegError, match=rf"other data \(.*validation_cases \['{moved}'\] "
                                           r"then, \[\] now"):
        train(root, _options(tmp_path, iterations=2, val_every=1, labelled=2), out,
              Reporter(quiet=True), resume=True)


def test_a_dataset_without_a_validation_split_trains_and_keeps_the_final_weights(tmp_path):
    """The tester's finding 8: splits with 'train' only (or a one-case dataset) were refused,
    although the trainer keeps its final weights without validation."""
    root = make_phantom_dataset(tmp_path / "TrainOnly", num_cases=3, shape_zyx=(6, 32, 32),
                                val_cases=1)
    info = json.loads((root / "dataset.json").read_text())
    info["splits"] = {"train": [c for split in info["splits"].values() for c in split]}
    (root / "dataset.json").write_text(json.dumps(info))
    logs = []
    reporter = Reporter(quiet=True)
    reporter.log = logs.append
    out = tmp_path / "model"
    result = train(root, _options(tmp_path, iterations=2, val_every=1), out, reporter)
    assert (out / "model.safetensors").is_file() and result["best_iteration"] == 2
    assert any("has no validation cases (no 'val' split, or an empty one): training keeps its "
               "final weights" in line for line in logs)


def test_resume_with_different_options_is_refused(dataset, tmp_path):
    out = tmp_path / "model"
    train(dataset, _options(tmp_path, iterations=1, val_every=1), out, Reporter(quiet=True))
    with pytest.raises(ArcosegError, match="options differ.*lr"):
        train(dataset, _options(tmp_path, iterations=2, lr=0.5), out, Reporter(quiet=True),
              resume=True)


def test_a_resume_may_change_the_iterations_and_the_log_interval_that_follows_them(dataset,
                                                                                   tmp_path):
    """The tester's finding: `arcoseg train` derives log_every from --iterations, so a resume
    with other --iterations was refused for an option the user never set."""
    out = tmp_path / "model"
    train(dataset, _options(tmp_path, iterations=1, log_every=1), out, Reporter(quiet=True))
    result = train(dataset, _options(tmp_path, iterations=2, log_every=2), out,
                   Reporter(quiet=True), resume=True)
    assert result["iterations"] == 2


def test_a_resumed_arco_run_keeps_the_head_it_started_with(dataset, tmp_path, monkeypatch):
    """A checkpoint records its network; one from before that record (no "network" entry)
    trained its head at 1/2 of the input, as every head then, and keeps it (the tester's
    finding: such a run resumed with a head at 1/4)."""
    out, stem = tmp_path / "model", tmp_path / "model/training/checkpoint"

    def resume_to(iterations):
        train(dataset, _options(tmp_path, method="arco", labelled=1, iterations=iterations),
              out, Reporter(quiet=True), resume=iterations > 1)
        return checkpoint_entry(stem, "network")["head_stride"]

    monkeypatch.setitem(DEFAULT_HEAD_STRIDE, "unet2d", 2)  # the code before the record
    assert resume_to(1) == 2
    monkeypatch.undo()
    skeleton = json.loads(stem.with_suffix(".json").read_text())
    skeleton["__dict__"] = [e for e in skeleton["__dict__"] if e[0] != "network"]
    stem.with_suffix(".json").write_text(json.dumps(skeleton))
    assert resume_to(2) == 2  # today's default for a new run is 4
    assert resume_to(3) == 2  # recorded now, and kept again


@pytest.mark.parametrize("kw, message", [
    ({"patch": (30, 30)}, "multiple of 16"),
    ({"method": "magic"}, "Unknown --method"),
    ({"sampler": "xx"}, "Unknown --sampler"),
    ({"dims": 4}, "--dims"),
    ({"mix": "sideways"}, "Unknown --mix"),
    ({"teacher_norm": "layer"}, "Unknown --teacher-norm"),
    ({"warmup": -1}, "--warmup"),
])
def test_bad_options_are_refused(tmp_path, kw, message):
    with pytest.raises(ArcosegError, match=message):
        _options(tmp_path, **kw)


def test_time_budget_shortens_the_schedule(dataset, tmp_path):
    result = train(dataset, _options(tmp_path, iterations=100000, budget_seconds=1.0,
                                     val_every=10**6, checkpoint_every=10**6),
                   tmp_path / "m", Reporter(quiet=True))
    assert 5 <= result["iterations"] < 100000
    assert result["seconds"] < 1.0 + 5 * result["seconds_per_iteration"] + 1.0


def test_convergence_needs_a_flat_loss_and_enough_of_the_schedule():
    from arcoseg.train.trainer import Convergence

    falling, flat = Convergence(window=5), Convergence(window=5)
    for i in range(40):
        falling.add(1.0 / (i + 1))
        flat.add(0.5)
    assert flat.converged(40, 100) and not falling.converged(40, 100)
    assert not flat.converged(10, 100)  # before 30 % of the schedule
    late = Convergence(window=5, min_fraction=0.8)  # e.g. after a warm-up of half
    for _ in range(40):
        late.add(0.5)
    assert not late.converged(40, 100) and late.converged(80, 100)
    after_iterations = Convergence(window=5, min_iterations=50)  # a warm-up of 50 iterations
    for _ in range(40):
        after_iterations.add(0.5)
    assert not after_iterations.converged(70, 100) and after_iterations.converged(80, 100)


def test_convergence_waits_while_the_held_out_score_still_improves():
    from arcoseg.train.trainer import Convergence

    rising, levelled = Convergence(window=5), Convergence(window=5)
    for _ in range(40):
        rising.add(0.5)
        levelled.add(0.5)
    for score in (0.60, 0.70, 0.80):  # the last beats everything before by more than 0.01
        rising.add_score(score)
    for score in (0.80, 0.60, 0.805):  # +0.005 over the best before: noise, not a trend
        levelled.add_score(score)
    assert rising.score_improving() and not rising.converged(40, 100)
    assert not levelled.score_improving() and levelled.converged(40, 100)
    rising.add_score(0.79)
    rising.add_score(0.78)  # two scores without a gain: the loss rule decides again
    assert rising.converged(50, 100)


@pytest.fixture(scope="module")
def dataset_3d(tmp_path_factory):
    return make_phantom_dataset(tmp_path_factory.mktemp("ds3") / "Phantom3D", num_cases=4,
                                shape_zyx=(16, 32, 32), val_cases=1)


@pytest.mark.parametrize("method, sampler", [("mean_teacher", "sg"), ("arco", "ns"),
                                             ("arco", "sg"), ("arco", "sag")])
def test_semi_supervised_methods_train_in_2d_and_log_their_terms(dataset, tmp_path, method,
                                                                  sampler):
    out = tmp_path / "m"
    train(dataset, _options(tmp_path, method=method, sampler=sampler, labelled=1, iterations=3),
          out, Reporter(quiet=True))
    records = [json.loads(line) for line in (out / "training/metrics.jsonl").read_text().splitlines()]
    assert {"loss_sup", "loss_unsup"} <= set(records[-1])
    if method == "arco":
        assert {"loss_contrast", "loss_nn", "anchors/class1"} <= set(records[-1])
    meta = json.loads((out / "model.json").read_text())
    assert meta["provenance"]["method"] == method
    # ARCO adds a representation head (64-dim at 1/4 of the input in 2D); mean teacher none
    head = (meta["network"]["head_dim"], meta["network"]["head_stride"])
    assert head == ((64, 4) if method == "arco" else (None, 2))


def test_warm_up_and_bidirectional_mixing_reach_the_method(dataset, tmp_path):
    out = tmp_path / "m"
    train(dataset, _options(tmp_path, method="arco", labelled=1, iterations=4, warmup=2,
                            mix="bidirectional"), out, Reporter(quiet=True))
    records = [json.loads(line) for line in (out / "training/metrics.jsonl").read_text().splitlines()]
    by_iteration = {r["iteration"]: r for r in records if "loss" in r}
    assert "loss_unsup" not in by_iteration[2] and by_iteration[2]["rampup"] == 0.0
    assert "loss_unsup" in by_iteration[3]
    options = json.loads((out / "model.json").read_text())["provenance"]["options"]
    assert (options["warmup"], options["mix"], options["teacher_norm"]) == (2, "bidirectional",
                                                                           "batch")


class _Progress(Reporter):
    def __init__(self):
        super().__init__(quiet=True)
        self.phases = []

    def progress(self, step, total, message="", **fields):
        if message == "training" and "phase" in fields:
            self.phases.append((step, fields["phase"]))


def test_training_progress_says_which_phase_each_step_was(dataset, tmp_path):
    reporter = _Progress()
    train(dataset, _options(tmp_path, method="arco", labelled=1, iterations=4, warmup=2,
                            val_every=10), tmp_path / "m", reporter)
    assert reporter.phases == [(1, "supervised"), (2, "supervised"), (3, "semi-supervised"),
                               (4, "semi-supervised")]


@pytest.mark.parametrize("method", ["supervised", "arco"])
def test_3d_models_train_on_patches(dataset_3d, tmp_path, method):
    out = tmp_path / "m3"
    result = train(dataset_3d, _options(tmp_path, dims=3, patch=(16, 32, 32), method=method,
                                        labelled=1, iterations=2, val_every=2),
                   out, Reporter(quiet=True))
    assert result["iterations"] == 2
    network = json.loads((out / "model.json").read_text())["network"]
    assert network["arch"] == "vnet3d"
    assert (network["head_dim"], network["head_stride"]) == ((32, 2) if method == "arco"
                                                             else (None, 2))


def test_extra_unlabelled_images_join_the_unlabelled_pool(dataset, tmp_path):
    from arcoseg.train.trainer import prepare_data

    extra = tmp_path / "extra"
    extra.mkdir()
    for f in sorted((dataset / "imagesTr").iterdir())[:2]:
        (extra / f.name).write_bytes(f.read_bytes())
    base = prepare_data(dataset, _options(tmp_path, method="mean_teacher", labelled=1),
                        Reporter(quiet=True))
    more = prepare_data(dataset, _options(tmp_path, method="mean_teacher", labelled=1,
                                          unlabelled=[extra]), Reporter(quiet=True))
    assert len(more.unlabelled) == len(base.unlabelled) + 2
    assert all(c.label is None for c in more.unlabelled)


def test_extra_unlabelled_images_on_a_multichannel_dataset_are_refused_before_any_work(
        tmp_path):
    """The tester's finding 4: one-channel extra images crashed a two-channel run mid-training
    ('Sizes of tensors must match', exit 1)."""
    from arcoseg.train.trainer import prepare_data

    dataset = make_phantom_dataset(tmp_path / "Two", num_cases=4, shape_zyx=(4, 16, 16))
    info = json.loads((dataset / "dataset.json").read_text())
    info["channel_names"] = {"0": "T1", "1": "T2"}
    (dataset / "dataset.json").write_text(json.dumps(info))
    for image in sorted((dataset / "imagesTr").glob("*_0000.nii.gz")):
        image.with_name(image.name.replace("_0000", "_0001")).write_bytes(image.read_bytes())
    extra = next((dataset / "imagesTr").iterdir())
    with pytest.raises(InputError, match=r"--unlabelled: .* has 2 per case \(T1, T2\)"):
        prepare_data(dataset, _options(tmp_path, method="mean_teacher", labelled=1,
                                       unlabelled=[extra]), Reporter(quiet=True))
    assert not (tmp_path / "cache").exists()  # refused before any preprocessing


def test_a_patch_far_larger_than_every_image_is_refused_before_training(dataset, tmp_path):
    """`--patch 4096 4096` on 32 x 32 slices exhausted 24 GB before the first iteration."""
    from arcoseg.train.trainer import prepare_data

    # 128 x 128 = 16 x the 32 x 32 slices: still accepted (small images, a default patch)
    prepare_data(dataset, _options(tmp_path, patch=(128, 128)), Reporter(quiet=True))
    with pytest.raises(InputError) as info:
        prepare_data(dataset, _options(tmp_path, patch=(4096, 4096)), Reporter(quiet=True))
    message = str(info.value)
    assert "--patch 4096 x 4096" in message
    assert "largest image on the plan's grid (32 x 32" in message
    assert "at most 32 x 32" in message
    with pytest.raises(InputError, match="--patch 144 x 128"):  # just above 16 x
        prepare_data(dataset, _options(tmp_path, patch=(144, 128)), Reporter(quiet=True))


def test_an_unlabelled_folder_without_images_is_refused_before_training(dataset, tmp_path):
    """`train --unlabelled EMPTY` was ignored silently, as `adapt --unlabelled` was (one rule,
    `run_data.unlabelled_files`, now serves both)."""
    from arcoseg.train.trainer import prepare_data

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"--unlabelled: Folder .*empty is empty"):
        prepare_data(dataset, _options(tmp_path, method="mean_teacher", labelled=1,
                                       unlabelled=[empty]), Reporter(quiet=True))


def test_unlabelled_images_of_the_validation_split_or_label_maps_are_refused(dataset, tmp_path):
    """A hunter's finding: --unlabelled took the dataset's validation images (trained on, then
    used to pick the kept model: an optimistic val Dice) and its label maps, exit 0."""
    info = json.loads((dataset / "dataset.json").read_text())
    [val_case] = info["splits"]["val"]
    train_case = info["splits"]["train"][0]
    for given, message in (
            (dataset / "imagesTr", f"is validation case '{val_case}'"),
            (dataset / "labelsTr" / f"{train_case}.nii.gz", f"label map of case '{train_case}'")):
        with pytest.raises(InputError, match=message):
            train(dataset, _options(tmp_path, method="mean_teacher", labelled=2,
                                    unlabelled=[given]), tmp_path / "model", Reporter(quiet=True))
        assert not (tmp_path / "model" / "model.safetensors").exists()
    logs = []
    reporter = Reporter(quiet=True)
    reporter.log = logs.append
    train(dataset, _options(tmp_path, method="mean_teacher", labelled=2, iterations=1,
                            val_every=1,
                            unlabelled=[dataset / "imagesTr" / f"{train_case}_0000.nii.gz"]),
          tmp_path / "model", reporter)
    assert any("are training cases of" in line and "not added twice" in line for line in logs)


def test_an_unlabelled_image_of_another_split_is_used_not_taken_for_a_training_case(dataset,
                                                                                    tmp_path):
    """The regression hunt's finding: a 'test' split image was skipped as 'already used' (it is
    in no pool), and the run then refused for want of unlabelled data."""
    root = tmp_path / "Phantom"
    shutil.copytree(dataset, root)
    info = json.loads((root / "dataset.json").read_text())
    *train_cases, held = info["splits"]["train"]
    info["splits"] = {"train": train_cases, "val": info["splits"]["val"], "test": [held]}
    info["labelled_order"] = train_cases
    (root / "dataset.json").write_text(json.dumps(info))
    result = train(root, _options(tmp_path, method="mean_teacher", labelled=len(train_cases),
                                  iterations=1, val_every=1,
                                  unlabelled=[root / "imagesTr" / f"{held}_0000.nii.gz"]),
                   tmp_path / "model", Reporter(quiet=True))
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert result["iterations"] == 1 and meta["provenance"]["unlabelled_cases"] == 1
