"""The JSON-lines progress protocol the Slicer module and batch scripts parse."""

import io
import json
import math

import numpy as np

from arcoseg.progress import JsonReporter, Reporter


def test_json_reporter_writes_one_parseable_object_per_line():
    stream = io.StringIO()
    rep = JsonReporter(stream)
    rep.progress(3, 10, "training", loss=np.float32(0.5))
    rep.log("hello")
    rep.result(dice=math.nan, values=[np.int64(2)])
    rep.error("bad file", exit_code=2)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["progress", "log", "result", "error"]
    assert events[0] == {"event": "progress", "step": 3, "total": 10, "message": "training",
                         "loss": 0.5}
    assert events[2]["dice"] is None and events[2]["values"] == [2]
    assert events[3]["exit_code"] == 2


def test_text_reporter_draws_progress_and_logs_on_its_stream():
    stream = io.StringIO()
    rep = Reporter(stream)
    for step in range(1, 4):
        rep.progress(step, 3, "work")
    rep.log("done")
    text = stream.getvalue()
    assert "work" in text and "3/3" in text and "done" in text


def test_quiet_reporter_prints_nothing():
    stream = io.StringIO()
    rep = Reporter(stream, quiet=True)
    rep.progress(1, 2)
    rep.log("x")
    assert stream.getvalue() == ""


def test_text_result_lays_out_long_values_and_cuts_nothing(capsys):
    """A value that fits is printed whole; at the top level a long object gets a line per
    member and a long list a line per item; deeper (or past 20 items) they are summarised."""
    plan = {"spacing": [1.0, 1.0, 1.0], "context_slices": 1, "note": "n" * 190,
            "options": {f"option_{i}": i for i in range(30)}}
    classes = [{"name": f"class {i}", "value": i, "color": [1, 2, 3]} for i in range(5)]
    path = "/data/" + "p" * 250
    Reporter(io.StringIO()).result(model="m", plan=plan, classes=classes, path=path, n=3,
                                   many=[{"ref": f"m@v{i}"} for i in range(40)], short=[1, 2])
    assert capsys.readouterr().out.splitlines() == [
        "model: m", "plan:", "  spacing: [1.0, 1.0, 1.0]", "  context_slices: 1",
        "  note: " + "n" * 190, "  options: 30 settings (full detail: --progress json)",
        "classes:", *[f"  - {json.dumps(c)}" for c in classes], f"path: {path}", "n: 3",
        "many: 40 entries (full detail: --progress json)", "short: [1, 2]"]


def test_a_shown_table_stands_for_the_fields_it_covers(capsys):
    rep = Reporter(io.StringIO())
    rep.show("table row", covers=["versions"])
    rep.result(versions=[{"ref": f"m@v{i}"} for i in range(40)], home="/h")
    assert capsys.readouterr().out.splitlines() == ["table row", "home: /h"]


class _CountingBar:
    """Records every bar the Reporter opens (total, initial) instead of drawing it."""

    def __init__(self, opened):
        self.opened = opened

    def __call__(self, total, initial=0, **kwargs):
        from tqdm import tqdm

        self.opened.append({"total": total, "initial": initial})
        return tqdm(total=total, initial=initial, **kwargs)


def _bars(monkeypatch):
    import arcoseg.progress

    opened = []
    monkeypatch.setattr(arcoseg.progress, "tqdm", _CountingBar(opened))
    return opened


def test_one_bar_per_phase_when_a_budget_changes_the_total(monkeypatch):
    """Issue 17 item 17: Adapt opened a new bar every 5 iterations as its budget re-estimated
    the total, each starting at the current step (rates like 2 010 492 it/s)."""
    opened = _bars(monkeypatch)
    stream = io.StringIO()
    rep = Reporter(stream)
    totals = [2000, 600, 420, 400, 380, 370]
    for i, total in enumerate(totals):
        rep.progress(5 * (i + 1), total, "training", loss=0.5)
    rep.progress(30, 30, "training")  # the budget ends the run at iteration 30
    assert opened == [{"total": 2000, "initial": 5}]
    assert "30/30" in stream.getvalue()


def test_a_finished_bar_is_not_drawn_again(monkeypatch):
    """`train` reported its last step twice and left a stray '0/300' bar."""
    opened = _bars(monkeypatch)
    stream = io.StringIO()
    rep = Reporter(stream)
    for step in range(1, 4):
        rep.progress(step, 3, "training")
    rep.progress(3, 3, "training")
    assert len(opened) == 1 and "0/3" not in stream.getvalue().split("3/3")[-1]


def test_a_step_going_back_starts_the_next_phase(monkeypatch):
    opened = _bars(monkeypatch)
    rep = Reporter(io.StringIO())
    rep.progress(1, 4, "preprocessing")
    rep.progress(2, 4, "preprocessing")
    rep.progress(1, 4, "validation cases")
    assert opened == [{"total": 4, "initial": 1}, {"total": 4, "initial": 1}]
