"""A tiny stand-in for `python -m arcoseg … --progress json`, speaking the same protocol.

Usage: python fake_engine.py MODE. Used by the process-runner tests (a real child process).
"""

import json
import os
import signal
import subprocess
import sys
import time


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def ok():
    emit("log", message="starting")
    print("this line is not JSON", flush=True)
    print('{"no_event_key": 1}', flush=True)
    print("a warning on stderr", file=sys.stderr, flush=True)
    for step in (1, 2, 3):
        emit("progress", step=step, total=3, message=f"step {step}", loss=0.5 / step)
    emit("result", answer=42, outputs=[{"case": "c", "labels": "c.nii.gz"}])


def user_error():
    emit("error", message="Input x.nii.gz does not exist. Check the path.", exit_code=2,
         kind="InputError")
    sys.exit(2)


def crash():
    print("Traceback (most recent call last):\nZeroDivisionError: division by zero",
          file=sys.stderr, flush=True)
    sys.exit(1)


def no_result():
    emit("log", message="done, but forgot the result")


def tree(stubborn: bool):
    """Start a grandchild, report its pid, then work forever (until cancelled)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        def stop(signum, frame):
            emit("error", message="Cancelled.", exit_code=3, kind="Cancelled")
            sys.exit(3)
        signal.signal(signal.SIGTERM, stop)
    emit("log", message=f"grandchild {child.pid}")
    step = 0
    while True:
        step += 1
        emit("progress", step=step, total=1000, message="working")
        time.sleep(0.05)


def slow_exit():
    """Report the result, then take a while to exit (torch's teardown after `adapt`)."""
    emit("result", answer=42)
    emit("log", message="tearing down")
    time.sleep(30)


def env():
    emit("result", cuda=os.environ.get("CUDA_VISIBLE_DEVICES"),
         extra=os.environ.get("ARCOSEG_TEST_VAR"), unbuffered=os.environ.get("PYTHONUNBUFFERED"))


MODES = {"ok": ok, "error": user_error, "crash": crash, "noresult": no_result,
         "tree": lambda: tree(False), "stubborn": lambda: tree(True), "env": env,
         "slow_exit": slow_exit}

if __name__ == "__main__":
    MODES[sys.argv[1]]()
