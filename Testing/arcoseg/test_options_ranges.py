"""Every numeric option of every command has a range, is refused outside it with exit 2 and a
message naming the option, and every option documents itself (help text, default shown)."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from arcoseg.benchmarks.paper import build_parser as paper_parser
from arcoseg.cli import build_parser, main
from arcoseg.cpu_load import allowed_cores
from arcoseg.errors import ArcosegError
from arcoseg.ranges import FRACTION, NONNEG_INT, POSITIVE, POSITIVE_INT, ListOf, Range
from arcoseg.train.options import TrainOptions

PARSERS = {"arcoseg": build_parser, "paper benchmark": paper_parser}


def walk(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """(command words, parser) for a parser and all its sub-commands, recursively."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*words, name))


def options():
    """(command words, parser, action) of every option and positional of every command."""
    for root, build in PARSERS.items():
        for words, parser in walk(build()):
            for action in parser._actions:
                if not isinstance(action, (argparse._SubParsersAction, argparse._HelpAction,
                                           argparse._VersionAction)):
                    yield root, words, parser, action


def numeric_options():
    return [(root, words, action) for root, words, _, action in options()
            if isinstance(action.type, (Range, ListOf))]


def outside(rule: Range) -> list[str]:
    """Values just outside `rule`, plus ones never allowed (nan, inf, a fraction for ints)."""
    bad = ["nan", "inf", "x"]
    if rule.low is not None:
        bad.append(f"{rule.low:g}" if rule.low_open else f"{rule.low - 1:g}")
    if rule.high is not None:
        bad.append(f"{rule.high:g}" if rule.high_open else f"{rule.high + 1:g}")
    if rule.kind is int:
        bad.append("1.5")
    return bad


def inside(rule: Range) -> str:
    low = rule.low if rule.low is not None else 0
    return f"{low + 1 if rule.low_open else low:g}"


def test_every_numeric_option_has_a_range():
    """A new option with a bare type=int/float (no range) fails here."""
    bare = [f"{root} {' '.join(words)} {action.option_strings or action.dest}"
            for root, words, _, action in options()
            if action.type in (int, float) and not action.choices]
    assert bare == []
    assert len(numeric_options()) >= 30  # train, adapt, segment, demo, device, paper, ...


@pytest.mark.parametrize("root,words,action", numeric_options(),
                         ids=lambda x: x if isinstance(x, str) else
                         (getattr(x, "option_strings", None) or [" ".join(x)])[0])
def test_out_of_range_values_are_refused_with_exit_2(root, words, action, capsys):
    rule = action.type.item if isinstance(action.type, ListOf) else action.type
    option = action.option_strings[0]
    count = action.nargs if isinstance(action.nargs, int) else 1
    assert action.type(inside(rule)) is not None  # the rule accepts a sensible value
    for bad in outside(rule):
        argv = [*words, option, *[inside(rule)] * (count - 1), bad]
        with pytest.raises(SystemExit) as exit_info:
            PARSERS[root]().parse_args(argv)
        assert exit_info.value.code == 2, argv
        message = capsys.readouterr().err.splitlines()[-1]
        assert f"argument {'/'.join(action.option_strings)}" in message or option in message
        assert bad in message and ("expected" in message or "is not" in message), message


@pytest.mark.parametrize("argv,option,expected", [
    (["segment", "m", "x.nii.gz", "-o", "y.nii.gz", "--batch", "0"], "--batch", "[1, 1024]"),
    (["models", "check", "m", "--batch", "100000"], "--batch", "[1, 1024]"),
    # a hunter's: 1e20 passed, then the first batch grew to 12.8 GB, deaf to SIGTERM
    (["train", "data", "-o", "m", "--batch", "99999999999999999999"], "--batch", "[1, 1024]"),
    (["train", "data", "-o", "m", "--unlabelled-batch", "2000"], "--unlabelled-batch",
     "[1, 1024]"),
    (["train", "data", "-o", "m", "--lr", "-1"], "--lr", "> 0"),
    (["adapt", "--image", "a", "--annotations", "b", "--suggest", "-1"], "--suggest", ">= 0"),
    (["adapt", "--image", "a", "--annotations", "b", "--budget", "0"], "--budget", "> 0"),
    (["adapt", "--image", "a", "--annotations", "b", "--budget", "-10"], "--budget", "> 0"),
    (["adapt", "--image", "a", "--annotations", "b", "--warmup", "1"], "--warmup", "[0, 1)"),
    (["demo", "--slices", "0"], "--slices", ">= 1"),
    (["device", "--threads", "0"], "--threads", "in [1, "),
    # a huge count crashed torch's thread pools (exit 139), the serve worker with it
    (["segment", "m", "x.nii.gz", "-o", "y.nii.gz", "--threads", "100000"], "--threads",
     f"in [1, {allowed_cores()}]"),
])
def test_reported_cases_end_before_any_work(argv, option, expected, capsys):
    """Issue 17 item 14 and issue 13 item 5: these ran (or crashed with a traceback) before."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and expected in err and "Traceback" not in err


def test_range_descriptions_and_checks():
    assert POSITIVE_INT.describe() == "a whole number >= 1"
    assert POSITIVE.describe() == "a number > 0"
    assert FRACTION.describe() == "a number in [0, 1)"
    assert POSITIVE_INT("3") == 3 and FRACTION("0.5") == 0.5 and NONNEG_INT("0") == 0
    assert ListOf(POSITIVE_INT)("3, 7") == [3, 7]
    for rule, bad in ((ListOf(POSITIVE_INT), "3,0"), (ListOf(POSITIVE_INT), ",")):
        with pytest.raises(argparse.ArgumentTypeError):
            rule(bad)
    assert POSITIVE.check(2.5, "--budget") == 2.5
    for value in (0, -10, math.nan, math.inf, True, "5"):
        with pytest.raises(ArcosegError, match="--budget must be a number > 0"):
            POSITIVE.check(value, "--budget")
    with pytest.raises(ArcosegError, match="whole number"):
        POSITIVE_INT.check(2.5, "--batch")


@pytest.mark.parametrize("field,value", [("lr", -1.0), ("lr", 0.0), ("seed", -1),
                                         ("val_every", 0), ("lambda_u", -0.1), ("grid", 0),
                                         ("budget_seconds", -10.0), ("warmup_fraction", 1.0),
                                         ("labelled", 0), ("batch", 0)])
def test_engine_options_use_the_same_ranges(field, value):
    """Python callers (Adapt, the benchmarks) get the command line's rule, not a crash later."""
    with pytest.raises(ArcosegError, match=f"--{field.replace('_', '-')} must be"):
        TrainOptions(**{field: value})


def test_every_option_has_help_and_shows_its_default():
    missing_help, missing_default = [], []
    for root, words, parser, action in options():
        name = f"{root} {' '.join(words)} {'/'.join(action.option_strings) or action.dest}"
        if not (action.help or "").strip():
            missing_help.append(name)
            continue
        default = action.default
        if (action.option_strings and action.nargs != 0 and default is not None
                and default is not argparse.SUPPRESS and default != []):
            shown = parser.formatter_class(prog="x")._get_help_string(action) % vars(action)
            if str(default) not in shown and "(default:" not in shown:  # value or in words
                missing_default.append(name)
    assert missing_help == []
    assert missing_default == []


@pytest.mark.parametrize("argv,shown", [
    (["adapt", "--help"], ["--budget BUDGET", "(default: 120.0)", "--image IMAGE",
                           "--method {arco,mean_teacher,supervised}", "(default: arco)"]),
    (["train", "--help"], ["(default: 2000)", "(default: 0.01)", "--val-every",
                           "(default: 200)"]),
    (["segment", "--help"], ["--batch BATCH", "(default: 8)"]),
])
def test_help_text_shows_defaults(argv, shown, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    for item in shown:
        assert item in text


def test_usage_errors_are_json_events_for_programs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "m", "x.nii.gz", "-o", "y", "--batch", "0", "--progress", "json"])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    event = json.loads(out.strip().splitlines()[-1])
    assert event["event"] == "error" and event["exit_code"] == 2
    assert "argument --batch: 0 is out of range" in event["message"]
    assert "argument --batch" in err  # people still read it on stderr
