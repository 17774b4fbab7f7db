"""The paper benchmark: trains each method, evaluates, tabulates, skips finished runs, resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arcoseg.benchmarks import paper, paper_plan
from arcoseg.benchmarks.profiles import PROFILES, paper_result, settings_for
from arcoseg.benchmarks.report import format_results
from arcoseg.cli import build_parser
from arcoseg.commands.train import options_from_args
from arcoseg.data.dataset import Case, DatasetInfo, load_dataset
from arcoseg.data.synthetic import make_phantom, make_phantom_dataset
from arcoseg.errors import ArcosegError, Cancelled
from arcoseg.io.images import write_image
from arcoseg.progress import Reporter
from arcoseg.train.run import train

SMOKE = ["--profile", "smoke", "--dims", "2", "--iterations", "2", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One torch thread in the training processes: tiny steps, robust timing on a busy machine."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_phantom_dataset(tmp_path_factory.mktemp("bench") / "Phantom", num_cases=6,
                                shape_zyx=(6, 32, 32), val_cases=2)


def bench(dataset, out, *extra):
    """Run the benchmark in this process (training still runs in child processes)."""
    args = paper.parse_args(["--data", str(dataset), "--out", str(out), *SMOKE, *extra])
    return paper.run(args, Reporter(quiet=True), paper.ChildStop())


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    """Two methods at 2 labelled cases, trained and evaluated: (out folder, run summary)."""
    out = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:  # function-scoped fixtures do not apply here yet
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("ARCOSEG_CACHE", str(tmp_path_factory.mktemp("cache")))
        summary = bench(dataset, out, "--setting", "2", "--methods", "supervised,arco-sg")
    return out, summary


def test_every_method_is_trained_evaluated_and_recorded(finished):
    out, summary = finished
    assert summary["ran"] == 2 and summary["skipped"] == 0
    runs = {r["method"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(runs) == {"supervised", "arco-sg"}
    arco = runs["arco-sg"]
    assert arco["key"] == "Phantom/smoke-2d-2it/labelled-2/arco-sg/seed-0"
    assert "--sampler sg" in arco["command"] and "--labelled 2" in arco["command"]
    assert arco["benchmark_command"].startswith("python -m arcoseg.benchmarks.paper --data ")
    assert arco["options"]["method"] == "arco" and arco["options"]["iterations"] == 2
    assert arco["training"]["iterations"] == 2 and arco["training"]["seconds_per_iteration"] > 0
    assert arco["peak_rss_mb"] > 50 and arco["wall_seconds"] > 0
    assert (out / arco["key"] / "model" / "model.safetensors").is_file()
    evaluation = arco["evaluations"]["Phantom:val"]
    assert evaluation["n_cases"] == 2
    for stats in (evaluation["summary"]["mean"], evaluation["summary"]["classes"]["class1"]):
        assert set(stats) >= {"dice", "jaccard", "hd95_vox", "asd_vox", "hd95_mm", "asd_mm"}
    # same data, seed and schedule; only the method and its batch split differ
    sup = runs["supervised"]["options"]
    assert (sup["patch"], sup["seed"], sup["labelled"]) == (arco["options"]["patch"], 0, 2)
    assert sup["batch"] == arco["options"]["batch"] + arco["options"]["unlabelled_batch"]


def test_markdown_table_has_a_row_per_method_with_per_class_dice(finished):
    out, _ = finished
    table = (out / "results.md").read_text(encoding="utf-8")
    assert "## Phantom — smoke-2d-2it — evaluated on Phantom:val (2 cases)" in table
    header = next(line for line in table.splitlines() if line.startswith("| labelled"))
    for column in ("Dice %", "Jaccard %", "HD95 vox", "ASD vox", "class1 Dice %",
                   "class2 Dice %", "paper Dice % / ASD vox", "s/it", "peak MB", "model"):
        assert column in header
    rows = [line for line in table.splitlines() if line.startswith("| 2 |")]
    assert [row.split(" | ")[1] for row in rows] == ["supervised", "arco-sg"]
    assert "Ranking by Dice, 2 labelled" in table


def test_second_invocation_skips_finished_runs(finished, dataset):
    out, _ = finished
    log = out / "Phantom/smoke-2d-2it/labelled-2/supervised/seed-0/train.log"
    before = log.read_text()
    summary = bench(dataset, out, "--setting", "2", "--methods", "supervised,arco-sg")
    assert summary["skipped"] == 2 and summary["ran"] == 0
    assert log.read_text() == before


def test_more_datasets_are_evaluated_without_retraining(finished, dataset, tmp_path):
    out, _ = finished
    other = make_phantom_dataset(tmp_path / "Heldout", num_cases=2, shape_zyx=(6, 32, 32),
                                 seed=5, val_cases=1)
    log = out / "Phantom/smoke-2d-2it/labelled-2/arco-sg/seed-0/train.log"
    before = log.read_text()
    summary = bench(dataset, out, "--setting", "2", "--methods", "supervised,arco-sg",
                    "--eval-data", str(other))
    assert summary["ran"] == 2 and log.read_text() == before
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert all(r["evaluations"]["Heldout:all"]["n_cases"] == 2 for r in runs)
    assert "evaluated on Heldout:all (2 cases)" in (out / "results.md").read_text(encoding="utf-8")


def test_a_run_folder_with_other_options_is_refused(finished, dataset, tmp_path):
    out, _ = finished
    copy = tmp_path / "out"
    record_path = "Phantom/smoke-2d-2it/labelled-2/supervised/seed-0/run.json"
    (copy / record_path).parent.mkdir(parents=True)
    record = json.loads((out / record_path).read_text())
    record["train_args"][record["train_args"].index("--batch") + 1] = "64"
    (copy / record_path).write_text(json.dumps(record))
    with pytest.raises(ArcosegError, match="other training options.*--batch 64"):
        bench(dataset, copy, "--setting", "2", "--methods", "supervised")


def test_interrupted_training_resumes_from_its_checkpoint(dataset, tmp_path, capsys):
    out = tmp_path / "results"
    args = paper.parse_args(["--data", str(dataset), "--out", str(out), *SMOKE,
                             "--setting", "1", "--methods", "supervised"])
    (spec,) = paper_plan.plan_runs(args, load_dataset(dataset))
    # The exact options the training process builds from the run's arguments.
    train_args = build_parser().parse_args(["train", str(dataset), "--out", str(spec.model_dir),
                                            *spec.train_args, "--device", "cpu"])
    log = spec.model_dir / "training/metrics.jsonl"
    with pytest.raises(Cancelled):  # after its first iteration (one log record each)
        train(dataset, options_from_args(train_args), spec.model_dir, Reporter(quiet=True),
              should_stop=lambda: log.exists() and log.read_text().count("\n") >= 1)

    bench(dataset, out, "--setting", "1", "--methods", "supervised", "--dry-run")
    assert "[resume]" in capsys.readouterr().out

    bench(dataset, out, "--setting", "1", "--methods", "supervised")
    record = json.loads((spec.run_dir / "run.json").read_text())
    assert [s["resumed"] for s in record["segments"]] == [True]
    assert "Resuming at iteration 1" in (spec.run_dir / "train.log").read_text()
    metrics = (spec.model_dir / "training/metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in metrics] == [1, 2]
    assert "Phantom:val" in record["evaluations"]


def test_sigint_checkpoints_the_running_training_and_exits_3(dataset, tmp_path):
    out = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "arcoseg.benchmarks.paper", "--data",
                             str(dataset), "--out", str(out), *SMOKE, "--iterations", "100000",
                             "--setting", "1", "--methods", "supervised", "--progress", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = out / "Phantom/smoke-2d-100000it/labelled-1/supervised/seed-0"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and '"training"' not in _text(run_dir / "train.log"):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        _kill_with_children(proc)
    assert proc.returncode == 3, stderr
    assert "checkpoint is saved" in stderr
    assert (run_dir / "model/training/checkpoint.json").is_file()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["training"] is None and record["segments"][-1]["exit_code"] == 3
    assert "Not finished" in (out / "results.md").read_text(encoding="utf-8")


def _text(path):
    return path.read_text() if path.is_file() else ""


def _kill_with_children(proc):
    """If the benchmark is still running (the test failed), end it and its training process."""
    if proc.poll() is not None:
        return
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    for pid in (children.read_text().split() if children.is_file() else []):
        os.kill(int(pid), signal.SIGKILL)
    proc.kill()
    proc.wait()


def test_a_stop_request_before_a_run_starts_nothing(dataset, tmp_path):
    args = paper.parse_args(["--data", str(dataset), "--out", str(tmp_path), *SMOKE,
                             "--setting", "1", "--methods", "supervised"])
    stop = paper.ChildStop()
    stop.requested = True
    with pytest.raises(Cancelled, match="run the same command"):
        paper.run(args, Reporter(quiet=True), stop)
    assert not (tmp_path / "Phantom").exists()


def test_settings_are_required_except_for_the_all_labels_upper_bound(dataset, tmp_path):
    with pytest.raises(SystemExit):
        paper.parse_args(["--data", str(dataset), "--methods", "supervised"])
    with pytest.raises(SystemExit):
        paper.parse_args(["--data", str(dataset), "--setting", "1", "--methods", "fixmatch"])
    args = paper.parse_args(["--data", str(dataset), "--out", str(tmp_path), *SMOKE,
                             "--methods", "supervised-all"])
    (spec,) = paper_plan.plan_runs(args, load_dataset(dataset))
    assert spec.key.endswith("/all/supervised-all/seed-0") and "--labelled" not in spec.train_args


# ------------------------------------------------------------------------------------ profiles
def _dataset(tmp_path, name, spacing_zyx):
    image, label = make_phantom((4, 16, 16), spacing_zyx=spacing_zyx)
    write_image(image, tmp_path / "img.nii.gz")
    write_image(label, tmp_path / "lab.nii.gz")
    cases = [Case(f"c{i}", [tmp_path / "img.nii.gz"], tmp_path / "lab.nii.gz") for i in range(3)]
    return DatasetInfo(tmp_path, name, {"background": 0, "a": 1, "b": 2}, ".nii.gz", cases)


def test_known_datasets_get_their_own_settings(tmp_path):
    cpu, gpu = PROFILES["cpu"], PROFILES["paper"]
    acdc = _dataset(tmp_path, "ACDC", (1.0, 1.0, 1.0))  # stored 1 mm, yet 2D by name
    assert settings_for(cpu, acdc).dims == 2
    cpu_acdc, gpu_acdc = settings_for(cpu, acdc), settings_for(gpu, acdc)
    assert (cpu_acdc.patch, cpu_acdc.spacing) == ((128, 128), (1.0, 2.0, 2.0))
    assert (gpu_acdc.patch, gpu_acdc.iterations) == ((256, 256), 30000)
    la = _dataset(tmp_path, "LA", (1.25, 1.25, 1.25))
    assert settings_for(cpu, la).patch == (48, 64, 64) and settings_for(gpu, la).iterations == 6000


def test_other_datasets_are_2d_only_when_strongly_anisotropic(tmp_path):
    cpu = PROFILES["cpu"]
    assert settings_for(cpu, _dataset(tmp_path, "Thick", (5.0, 1.0, 1.0))).dims == 2
    assert settings_for(cpu, _dataset(tmp_path, "Iso", (2.0, 1.0, 1.0))).dims == 3
    assert settings_for(cpu, _dataset(tmp_path, "Iso", (2.0, 1.0, 1.0)), dims=2).dims == 2
    assert settings_for(cpu, _dataset(tmp_path, "Iso", (2.0, 1.0, 1.0))).spacing is None


def test_paper_numbers_are_looked_up_by_dataset_method_and_setting():
    assert paper_result("ACDC", "arco-sg", 3) == (88.7, 0.841)
    assert paper_result("LA", "supervised", 8) == (82.7, 3.26)
    assert paper_result("ACDC", "supervised-all", None) == (91.5, 0.996)
    assert paper_result("ACDC", "mean_teacher", 3) is None
    assert paper_result("Phantom", "arco-sg", 3) is None


# -------------------------------------------------------------------------------------- report
def _record(method, seed, dice, labelled=3):
    stats = {"mean": dice, "std": 0.0, "n": 2}
    metrics = {m: stats for m in ("dice", "jaccard", "hd95_vox", "asd_vox")}
    return {"key": f"ACDC/cpu-2d-2000it/labelled-{labelled}/{method}/seed-{seed}",
            "dataset": "ACDC", "labelled": labelled, "method": method, "seed": seed,
            "training": {"seconds_per_iteration": 0.3, "seconds": 600.0},
            "wall_seconds": 660.0, "peak_rss_mb": 1500.0, "trained": f"2026-01-0{seed + 1}",
            "benchmark_command": "python -m arcoseg.benchmarks.paper --setting 3",
            "machine": {"cpu": "EPYC", "cpu_count": 2, "torch_threads": 2, "device": "CPU",
                        "torch": "2.13", "host": "vm"},
            "evaluations": {"ACDC:val": {"n_cases": 20, "summary": {
                "mean": metrics, "classes": {"RV": metrics, "Myo": metrics, "LV": metrics}}}}}


def test_report_merges_seeds_and_puts_the_paper_numbers_next_to_ours():
    unfinished = _record("mean_teacher", 0, 0.60) | {"training": None}
    records = [_record("arco-sg", 0, 0.70), _record("arco-sg", 1, 0.74),
               _record("supervised", 0, 0.55), unfinished]
    text = format_results({"generated": "today", "command": "cmd", "runs": records})
    row = next(line for line in text.splitlines() if "| arco-sg |" in line)
    assert "| 72.0 ± 2.0 |" in row and "| 88.7 / 0.841 |" in row and "| 2 |" in row
    assert "arco-sg (72.0) > supervised (55.0)" in text
    assert "BCP 87.59" in text
    assert "Runs trained 2026-01-01 – 2026-01-02 on: EPYC (2 cores, 2 torch threads)" in text
    assert "`python -m arcoseg.benchmarks.paper --setting 3`" in text
    assert "Not finished (rerun the command to continue): " \
           "ACDC/cpu-2d-2000it/labelled-3/mean_teacher/seed-0" in text


def test_threads_option_is_passed_to_each_training_process(dataset, tmp_path):
    for extra, expected in (([], None), (["--threads", "1"], "1")):
        args = paper.parse_args(["--data", str(dataset), "--out", str(tmp_path), *SMOKE,
                                 "--setting", "2", "--methods", "supervised", *extra])
        (spec,) = paper_plan.plan_runs(args, load_dataset(dataset))
        command = paper_plan.train_command(spec, load_dataset(dataset), args, False)
        threads = command[command.index("--threads") + 1] if "--threads" in command else None
        assert threads == expected
    with pytest.raises(SystemExit):
        paper.parse_args(["--data", str(dataset), *SMOKE, "--setting", "2", "--threads", "0"])


def test_nproc_per_node_runs_each_training_under_torchrun(dataset, tmp_path):
    for extra, launcher in (([], []), (["--nproc-per-node", "2"],
                                       ["-m", "torch.distributed.run", "--standalone",
                                        "--nproc-per-node", "2"])):
        args = paper.parse_args(["--data", str(dataset), "--out", str(tmp_path), *SMOKE,
                                 "--setting", "2", "--methods", "supervised", *extra])
        (spec,) = paper_plan.plan_runs(args, load_dataset(dataset))
        command = paper_plan.train_command(spec, load_dataset(dataset), args, False)
        assert command[1:command.index("arcoseg") - 1] == launcher
        assert command[command.index("arcoseg") - 1:command.index("arcoseg") + 2] == \
            ["-m", "arcoseg", "train"]


def test_jitter_is_stated_in_every_run_and_a_non_default_one_gets_its_own_folder(dataset,
                                                                                tmp_path):
    def plan(*extra):
        args = paper.parse_args(["--data", str(dataset), "--out", str(tmp_path), *SMOKE,
                                 "--setting", "2", "--methods", "supervised,arco-sg", *extra])
        return paper_plan.plan_runs(args, load_dataset(dataset))

    default, off = plan(), plan("--jitter", "0")
    assert all(s.train_args[s.train_args.index("--jitter") + 1] == "0.5" for s in default)
    assert all(s.train_args[s.train_args.index("--jitter") + 1] == "0.0" for s in off)
    assert "-jitter0/" in off[0].key and "jitter" not in default[0].key
    with pytest.raises(SystemExit):
        plan("--jitter", "1")
