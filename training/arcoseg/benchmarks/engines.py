"""Benchmarks that compare engines: run a piece of code in a child process on another engine's
`training/` folder (this checkout's or an older one), so that each engine is measured alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_in_engine(engine: Path, code: str, job: dict) -> dict:
    """Run `python -c CODE JOB_JSON` with PYTHONPATH = `engine` (a training/ folder); the
    child prints its answer as JSON on its last line of stdout, which is returned.
    CalledProcessError if the child fails."""
    env = {**os.environ, "PYTHONPATH": str(engine)}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(job)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
