"""`arcoseg serve` against a real worker process (`python -m arcoseg serve`): request ids, event
order, bad requests, cancel, shutdown, and what a killed worker leaves behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from serve_worker import TRAINING, Worker

from arcoseg.cli import main
from arcoseg.errors import EXIT_CANCELLED, EXIT_USER

@pytest.fixture(scope="module")
def data(tmp_path_factory, drawn_phantom) -> dict[str, Path]:
    """A tiny image, annotations on three coronal slices, and a registry home."""
    root = tmp_path_factory.mktemp("serve")
    return {**drawn_phantom(root, (6, 32, 32)), "home": root / "home", "root": root}


def adapt_argv(data, out: Path, iterations: int, name: str = "organs") -> list[str]:
    return ["adapt", "--image", str(data["image"]), "--annotations", str(data["ann"]),
            "--from-scratch", "--classes", "a,b", "--name", name, "--iterations",
            str(iterations), "--budget", "600", "--device", "cpu", "--threads", "1",
            "-o", str(out)]


@pytest.fixture(scope="module")
def worker(data):
    w = Worker(data["home"], "--no-warmup")
    assert w.next()["event"] == "ready"
    yield w
    w.close()


@pytest.fixture(scope="module")
def model(worker, data) -> str:
    """organs@v1, adapted from scratch through the worker (3 iterations)."""
    worker.send({"id": "setup", "argv": adapt_argv(data, data["root"] / "setup.nii.gz", 3)})
    final, _ = worker.final("setup", timeout=300)
    assert final["event"] == "result" and final["exit_code"] == 0, final
    return final["model"]["path"]


def test_a_heavy_request_while_the_quick_lane_imports_torch_is_answered(data, tmp_path):
    """The tester's finding: with --no-warmup, `device` (quick lane) imports torch while an
    evaluate request (heavy lane) read the half-imported module: the heavy lane's thread died,
    that request and every later one got no answer, and the worker exited 0."""
    worker = Worker(tmp_path / "home", "--no-warmup")
    try:
        assert worker.next()["event"] == "ready"
        missing = str(tmp_path / "missing")
        worker.send({"id": "d", "argv": ["device"]})
        worker.send({"id": "e", "argv": ["evaluate", missing, missing, "-o", missing]})
        worker.send({"id": "e2", "argv": ["evaluate", missing, missing, "-o", missing]})
        for request_id in ("e", "e2"):
            final, _ = worker.final(request_id, timeout=120)
            assert (final["event"], final["exit_code"]) == ("error", EXIT_USER), final
    finally:
        worker.close()


def test_a_model_query_during_the_warm_up_and_the_segments_after_it_succeed(model, data,
                                                                            tmp_path):
    """The tester's R1: `models show` (quick lane, imports torch and MONAI) sent as the worker
    starts raced the heavy lane's warm-up imports: a partially initialised MONAI module failed
    that request and every later segment of the worker (exit 1)."""
    worker = Worker(data["home"])  # with the warm-up
    try:
        worker.send({"id": "show", "argv": ["models", "show", model]})
        worker.send({"id": "seg", "argv": ["segment", model, str(data["image"]), "-o",
                                           str(tmp_path / "seg.nii.gz"), "--threads", "1"]})
        finals: dict = {}  # in either order: the segment may end before the query
        worker.until(lambda e: "exit_code" in e and finals.setdefault(e["id"], e) is not None
                     and {"show", "seg"} <= set(finals), timeout=300)
        for final in (finals["show"], finals["seg"]):
            assert (final["event"], final["exit_code"]) == ("result", 0), final
        assert (tmp_path / "seg.nii.gz").is_file()
    finally:
        worker.close()


@pytest.mark.parametrize("action", ["list", "activate organs@v1", "rollback organs",
                                    "remove organs@v1 --force"])
def test_the_queries_that_never_wait_for_the_engine_import_import_no_torch_or_monai(
        action, model, data, tmp_path):
    """serve.ENGINE_FREE_ACTIONS run at once even while the worker imports the engine: they
    must not import torch or MONAI themselves (checked on a copy of a real registry)."""
    from arcoseg.serve import ENGINE_FREE_ACTIONS

    assert action.split()[0] in ENGINE_FREE_ACTIONS
    home = tmp_path / "home"
    shutil.copytree(data["home"], home)
    code = ("import sys; from arcoseg.cli import main; main(sys.argv[1:]); "
            "print(sorted(m for m in ('torch', 'monai') if m in sys.modules), file=sys.stderr)")
    env = {**os.environ, "ARCOSEG_HOME": str(home), "PYTHONPATH": str(TRAINING)}
    done = subprocess.run([sys.executable, "-c", code, "models", *action.split()],
                          capture_output=True, text=True, env=env)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr


def test_bad_requests_get_an_error_and_the_worker_keeps_serving(worker):
    worker.send("not json")
    malformed = worker.next()
    assert (malformed["event"], malformed["id"], malformed["exit_code"]) == ("error", None,
                                                                             EXIT_USER)
    assert "not JSON" in malformed["message"]
    worker.send('{"id": "deep", "argv": ' + "[" * 100_000 + "]" * 100_000 + "}")  # a hunter's
    nested = worker.next()  # RecursionError in json: it ended the worker and all its requests
    assert nested["exit_code"] == EXIT_USER and "not JSON" in nested["message"]
    assert len(nested["message"]) < 600
    worker.send({"id": "u", "argv": ["frobnicate"]})
    unknown, _ = worker.final("u")
    assert unknown["event"] == "error" and unknown["exit_code"] == EXIT_USER
    assert "invalid choice: 'frobnicate'" in unknown["message"]
    worker.send({"id": "b", "argv": ["segment", "m", "img.nii.gz", "-o", "x", "--batch", "x"]})
    bad, _ = worker.final("b")
    assert bad["exit_code"] == EXIT_USER and "--batch" in bad["message"]
    worker.send({"id": "two", "argv": ["device"], "cancel": "b"})  # neither is acted on
    both, _ = worker.final("two")
    assert both["exit_code"] == EXIT_USER and "has argv and cancel" in both["message"]
    worker.send({"argv": ["models", "list"]})
    assert "needs an \"id\"" in worker.next()["message"]
    for invalid in (1.0, True):  # the tester's T4: tagged 1.0 / true, read as request 1's end
        worker.send({"id": invalid, "argv": ["models", "list"]})
        refused = worker.next()
        assert (refused["id"], refused["invalid_id"]) == (None, invalid)
        assert "a non-empty string or an integer" in refused["message"]
    worker.send({"id": "v", "argv": ["--version"]})
    assert worker.final("v")[0] == {"event": "result", "id": "v", "text": "arcoseg 0.1.0\n",
                                    "exit_code": 0}
    worker.send({"id": "after", "argv": ["models", "list"]})
    listed, events = worker.final("after")
    assert listed["event"] == "result" and listed["exit_code"] == 0 and "versions" in listed
    assert len(events) == 1


def test_segment_matches_the_one_shot_command_and_events_are_ordered(worker, model, data,
                                                                     tmp_path, monkeypatch):
    outs = [tmp_path / f"warm{i}.nii.gz" for i in range(2)]
    for i, out in enumerate(outs):
        worker.send({"id": f"s{i}", "argv": ["segment", model, str(data["image"]), "-o",
                                             str(out), "--device", "cpu"]})
    for i, out in enumerate(outs):
        final, events = worker.final(f"s{i}")
        kinds = [e["event"] for e in events]
        assert kinds[-1] == "result" and "progress" in kinds and set(kinds[:-1]) <= {"log",
                                                                                    "progress"}
        assert final["exit_code"] == 0 and final["outputs"][0]["labels"] == str(out)
        assert final["classes"] == ["background", "a", "b"] and final["device"] == "cpu"
    monkeypatch.setenv("ARCOSEG_HOME", str(data["home"]))
    cold = tmp_path / "cold.nii.gz"
    assert main(["segment", model, str(data["image"]), "-o", str(cold), "--device", "cpu",
                 "--progress", "none"]) == 0
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(cold)))
    for out in outs:
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), expected)


def test_models_list_is_not_queued_behind_a_running_adapt(worker, model, data, tmp_path):
    worker.send({"id": "long", "argv": adapt_argv(data, tmp_path / "long.nii.gz", 100000,
                                                   name="cancelled")})
    worker.until(lambda e: e.get("id") == "long" and e.get("message") == "training")
    # the tester's R4: a request or a cancel reusing a running request's id is refused with
    # an error tagged with no id: one tagged "long" would read as long's own end
    for reused in ({"id": "long", "argv": ["models", "list"]}, {"id": "long", "cancel": "x"}):
        worker.send(reused)
        refused = worker.until(lambda e: e.get("duplicate_id") == "long")
        assert all(e.get("event") not in ("result", "error") for e in refused[:-1])
        assert (refused[-1]["event"], refused[-1]["id"]) == ("error", None)
    worker.send({"id": "q", "argv": ["segment", model, str(data["image"]), "-o",
                                     str(tmp_path / "queued.nii.gz")]})
    worker.send({"id": "l", "argv": ["models", "list"]})
    listed, _ = worker.final("l")
    assert [v["ref"] for v in listed["versions"]] == ["organs@v1"]
    worker.send({"id": "c1", "cancel": "q"})
    queued, _ = worker.final("q")
    assert (queued["event"], queued["exit_code"]) == ("error", EXIT_CANCELLED)
    assert worker.final("c1")[0]["state"] == "queued"
    asked = time.monotonic()
    worker.send({"id": "c2", "cancel": "long"})
    cancelled, _ = worker.final("long")
    assert time.monotonic() - asked < 10
    assert cancelled["event"] == "error" and cancelled["exit_code"] == EXIT_CANCELLED
    worker.send({"id": "l2", "argv": ["models", "list"]})
    assert [v["ref"] for v in worker.final("l2")[0]["versions"]] == ["organs@v1"]
    assert not (tmp_path / "long.nii.gz").exists() and not (tmp_path / "queued.nii.gz").exists()
    worker.send({"id": "c3", "cancel": "nothing"})
    assert worker.final("c3")[0]["state"] == "not found"


def test_shutdown_cancels_the_running_request_and_ends_the_worker(data, tmp_path):
    worker = Worker(tmp_path / "home", "--no-warmup")
    try:
        worker.send({"id": "a", "argv": adapt_argv(data, tmp_path / "a.nii.gz", 100000)})
        worker.until(lambda e: e.get("message") == "training", timeout=300)
        worker.send({"id": "bye", "shutdown": True})
        events = worker.until(lambda e: e.get("shutdown") is True, timeout=30)
        assert [(e["id"], e["exit_code"]) for e in events if "exit_code" in e] == [
            ("a", EXIT_CANCELLED), ("bye", 0)]
        assert worker.proc.wait(timeout=10) == 0
    finally:
        worker.close()


def test_end_of_input_finishes_queued_requests_then_exits(data, tmp_path):
    worker = Worker(tmp_path / "home", "--no-warmup")
    try:
        worker.send({"id": 1, "argv": ["models", "list"]})
        worker.send({"id": 2, "argv": ["device", "--device", "cpu"]})
        worker.proc.stdin.close()
        assert worker.proc.wait(timeout=120) == 0
        finals = [e for e in iter(worker.events.get, None) if "exit_code" in e]
        assert sorted((e["id"] or 0, e["exit_code"]) for e in finals) == [(0, 0), (1, 0), (2, 0)]
        assert finals[-1]["shutdown"] is True
    finally:
        worker.close()


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_a_killed_worker_leaves_no_partial_output_and_no_partial_version(data, tmp_path):
    home = tmp_path / "home"
    worker = Worker(home, "--no-warmup")
    out = tmp_path / "seg.nii.gz"
    try:
        worker.send({"id": "a", "argv": adapt_argv(data, out, 100000)})
        worker.until(lambda e: e.get("message") == "training", timeout=300)
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=10)
    finally:
        worker.close()
    assert not out.exists() and list(tmp_path.glob("seg*")) == []
    env = {**os.environ, "ARCOSEG_HOME": str(home)}
    listed = subprocess.run([sys.executable, "-m", "arcoseg", "models", "list", "--progress",
                             "json"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(listed.stdout)["versions"] == []


def test_the_model_cache_reuses_an_unchanged_folder_and_reloads_a_rewritten_one(tmp_path):
    import torch

    from arcoseg.model_metadata import ModelMetadata, make_classes
    from arcoseg.modelfile import save_model
    from arcoseg.networks import NetworkConfig, build_model
    from arcoseg.serve_cache import ModelCache

    config = NetworkConfig(arch="unet2d", in_channels=1, num_classes=2, features=(4, 8, 16, 32, 64))
    metadata = ModelMetadata(network=config, classes=make_classes(["background", "organ"]))

    def save(folder: Path, seed: int) -> Path:
        torch.manual_seed(seed)
        save_model(folder, build_model(config), metadata)
        return folder

    cache = ModelCache(capacity=1)
    first = save(tmp_path / "m1", 0)
    model, _ = cache.load(first, "cpu")
    assert cache.load(first, "cpu")[0] is model and (cache.loads, cache.hits) == (1, 1)
    time.sleep(0.01)
    save(first, 1)  # rewritten in place: never served stale
    reloaded, _ = cache.load(first, "cpu")
    assert reloaded is not model and cache.loads == 2
    assert not torch.equal(next(reloaded.parameters()), next(model.parameters()))
    cache.load(save(tmp_path / "m2", 2), "cpu")  # capacity 1: m1 is evicted
    assert cache.load(first, "cpu")[0] is not reloaded and cache.loads == 4
    # the tester's R2: m2's files copied into m1's (same inodes, same sizes) keeping m1's
    # modification times, as `cp -p` or unzip do: only the change time tells
    for name in ("model.json", "model.safetensors"):
        target, st = first / name, (first / name).stat()
        with open(target, "r+b") as f:
            f.write((tmp_path / "m2" / name).read_bytes())
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (target.stat().st_ino, target.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    copied, _ = cache.load(first, "cpu")
    assert cache.loads == 5
    assert torch.equal(next(copied.parameters()), next(cache.load(tmp_path / "m2", "cpu")[0]
                                                       .parameters()))


@pytest.mark.parametrize("argv, light", [
    (["models", "list"], True), (["device"], True), (["models", "show", "m"], True),
    (["models", "check", "m"], False), (["segment", "m", "i.nii.gz", "-o", "o.nii.gz"], False)])
def test_queries_run_beside_heavy_work_but_a_model_check_queues_with_it(argv, light):
    from arcoseg.cli import build_parser
    from arcoseg.serve import is_light

    assert is_light(build_parser().parse_args(argv)) is light
