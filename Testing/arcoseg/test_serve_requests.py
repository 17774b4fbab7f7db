"""`arcoseg serve` answers every request, however malformed, and keeps serving: the hunters'
ways to end a worker (and every request queued or running in it) with one bad line."""

from __future__ import annotations

import json

import pytest
from serve_worker import Worker

from arcoseg.errors import EXIT_USER


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    worker = Worker(tmp_path_factory.mktemp("serve") / "home", "--no-warmup")
    yield worker
    worker.close()


def still_serving(worker: Worker, request_id: str) -> None:
    worker.send({"id": request_id, "argv": ["models", "list"]})
    assert worker.final(request_id)[0]["exit_code"] == 0


@pytest.mark.parametrize("argv", [
    ["segment", "m", "~no_such_user_here/img.nii.gz", "-o", "x.nii.gz"],  # expanduser raised
    ["segment", "m", "img.nii.gz", "-o", "x.nii.gz", "--batch", "1" * 400],  # isfinite overflowed
])
def test_an_option_value_no_type_check_expected_is_a_usage_error(worker, argv):
    worker.send({"id": "bad", "argv": argv})
    refused, _ = worker.final("bad")
    assert (refused["event"], refused["exit_code"], refused["kind"]) == ("error", EXIT_USER,
                                                                       "UsageError")
    still_serving(worker, "after-bad")


def test_ids_and_cancel_targets_nested_too_deeply_to_echo_are_refused(worker):
    deep = "[" * 900 + "]" * 900
    worker.send('{"id": ' + deep + ', "argv": ["device"]}')
    refused = worker.next()
    assert (refused["id"], refused["invalid_id"]) == (None, "<a JSON array>")
    worker.send('{"id": "c", "cancel": ' + deep + "}")
    refused, _ = worker.final("c")
    assert refused["exit_code"] == EXIT_USER and refused["cancel"] == "<a JSON array>"
    still_serving(worker, "after-deep")


@pytest.mark.parametrize("target", [True, 1.0, None, ""])
def test_a_cancel_of_no_request_id_is_refused_not_taken_for_request_1(worker, target):
    """A hunter's finding: {"cancel": true} stopped request 1, {"cancel": 2.0} request 2."""
    worker.send(json.dumps({"id": "c", "cancel": target}))
    refused, _ = worker.final("c")
    assert refused["event"] == "error" and '"cancel" takes the id of a request' in \
        refused["message"]


@pytest.mark.parametrize("request_id", [True, 1.5])
def test_a_cancel_with_no_valid_id_of_its_own_is_refused(worker, request_id):
    worker.send(json.dumps({"id": request_id, "cancel": "x"}))
    refused = worker.next()
    assert (refused["id"], refused["invalid_id"]) == (None, request_id)
    assert "Every cancel request needs an \"id\"" in refused["message"]


def test_an_id_may_be_reused_as_soon_as_its_final_event_is_read(worker):
    """A hunter's finding: after an internal error the lane gave memory back before it forgot
    the request; the same id sent at once was refused as 'already queued or running'."""
    for _ in range(20):
        worker.send({"id": 7, "argv": ["models", "show", "a" * 300]})
        final, _ = worker.final(7)
        assert "duplicate_id" not in final and final["exit_code"] == EXIT_USER
