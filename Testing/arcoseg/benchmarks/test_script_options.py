"""The benchmark and experiment scripts refuse numbers outside their ranges (issue 17 item 14):
every numeric option takes its rule from arcoseg.ranges, so `--budget -10` or `--cases 0`
ends with exit 2 and a message before any data is read."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from arcoseg.ranges import ListOf, Range

BENCHMARKS = Path(__file__).resolve().parents[3] / "training" / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.rglob("*.py") if "argparse" in p.read_text())


def script(path: Path):
    """The script imported as a module (its folder first on the path, as when run)."""
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def test_the_scripts_with_options_are_found():
    names = {p.name for p in SCRIPTS}
    assert {"adapt_benchmark.py", "segment_memory.py", "arco_levers.py",
            "mt_collapse.py"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_numeric_option_of_every_script_has_a_range(path):
    parser = script(path).build_parser()
    bare = [a.option_strings for a in parser._actions
            if a.type in (int, float) and not a.choices]
    assert bare == []
    assert any(isinstance(a.type, (Range, ListOf)) for a in parser._actions)


@pytest.mark.parametrize("name,argv,message", [
    ("adapt_benchmark.py", ["--data", "d", "--budget", "-10"],
     "argument --budget: -10 is out of range: expected a number > 0"),
    ("adapt_benchmark.py", ["--data", "d", "--cases", "0"],
     "argument --cases: 0 is out of range: expected a whole number >= 1"),
    ("adapt_benchmark.py", ["--data", "d", "--k", "2,0"],
     "argument --k: 0 is out of range: expected a whole number >= 1"),
    ("adapt_benchmark.py", ["--data", "d", "--prior-decay", "0"],
     "argument --prior-decay: 0 is out of range: expected a number in (0, 1]"),
    ("mt_collapse.py", ["spec", "--threads", "0"],
     "argument --threads: 0 is out of range: expected a whole number >= 1"),
    ("segment_memory.py", ["--shape", "0", "256", "256"],
     "argument --shape: 0 is out of range: expected a whole number >= 1"),
])
def test_reported_values_end_with_exit_2_and_the_rule(name, argv, message, capsys):
    [path] = [p for p in SCRIPTS if p.name == name]
    with pytest.raises(SystemExit) as exit_info:
        script(path).build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_good_values_still_parse():
    [path] = [p for p in SCRIPTS if p.name == "adapt_benchmark.py"]
    args = script(path).parse_args(["--data", "d", "--k", "1, 3", "--budget", "0.5"])
    assert args.k == [1, 3] and args.budget == 0.5 and args.cases == 4
