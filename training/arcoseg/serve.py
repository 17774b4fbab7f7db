"""`arcoseg serve`: a long-lived engine that answers JSON-lines requests on stdin.

Requests, one JSON object per line on stdin:
  {"id": "r1", "argv": ["segment", "MODEL", "IMAGE", "-o", "OUT"]}   any one-shot command line
  {"id": "c1", "cancel": "r1"}                                       stop r1 (queued or running)
  {"shutdown": true}                                                 cancel everything, exit 0
Answers on stdout are the one-shot `--progress json` events (arcoseg.progress), each tagged with
its request's "id"; a request's last event is its `result` or `error`, with the "exit_code" the
one-shot command would have returned. Events of one request keep their order; requests of one lane
run in arrival order: `segment`, `adapt`, `evaluate`, `train`, `demo` and `models check` (it runs
the network: a client sends it when a model is chosen, so that the first segment finds the model
loaded and its kernels ready) one at a time in the heavy lane, the other `models` actions and
`device` in the light lane, so a model list never waits behind an Adapt. A
`ready` event (no id) opens the stream. Bad requests (malformed JSON, unknown command, bad options)
get an `error` event (exit_code 2) and the worker keeps serving. End of stdin: finish the queued
requests, then exit. Nothing else is written to stdout: anything a library prints there goes to
stderr. No network port: only the process that started the worker can talk to it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import signal
import sys
import threading
from typing import Any, TextIO

from arcoseg import __version__
from arcoseg.errors import EXIT_CANCELLED, EXIT_INTERNAL, EXIT_USER
from arcoseg.commands.common import HelpFormatter
from arcoseg.cpu_load import CpuWatch
from arcoseg.progress import JsonReporter, to_jsonable
from arcoseg.ranges import NONNEG_INT
from arcoseg.serve_lanes import Lane, Request

LIGHT_COMMANDS = ("models", "device")  # quick registry and device queries ...
HEAVY_ACTIONS = ("check",)  # ... except `models check`, which runs the network
# `models` actions that import no torch or MONAI: they never wait for the engine's import
ENGINE_FREE_ACTIONS = ("list", "activate", "rollback", "remove")


def is_light(args: argparse.Namespace) -> bool:
    """Whether a parsed request is answered beside the heavy lane's work."""
    return args.command in LIGHT_COMMANDS and getattr(args, "action", None) not in HEAVY_ACTIONS


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `serve`."""
    p = sub.add_parser("serve", help="keep the engine loaded and answer JSON-lines requests on "
                                     "stdin (for the Slicer module and scripts)",
                       description=__doc__.split("\n\n", 1)[0] + " " + " ".join(
                           __doc__.split("\n\n", 1)[1].split()), formatter_class=HelpFormatter)
    p.add_argument("--cache-models", type=NONNEG_INT, default=2, metavar="N",
                   help="models kept loaded on their device for `segment` (0 keeps none)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="do not import torch and MONAI before the first request arrives")
    return p


class Channel:
    """The protocol stream: whole JSON lines, one writer at a time."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.RLock()  # re-entrant: the signal handler may emit mid-send

    def send(self, event: str, request_id: Any = None, **fields: Any) -> None:
        """Write {"event": event, "id": request_id, ...fields} as one line and flush it."""
        line = json.dumps(to_jsonable({"event": event, "id": request_id, **fields}),
                          allow_nan=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class RequestReporter(JsonReporter):
    """One request's events: the one-shot JSON events plus its id; results carry exit_code 0."""

    def __init__(self, channel: Channel, request_id: Any) -> None:
        super().__init__(io.StringIO())
        self.channel, self.request_id = channel, request_id
        # set before the final event is written: a client may reuse the id as soon as it reads
        # it, while the lane is still giving memory back (`Lane.knows`)
        self.finished = False

    def _emit(self, event: str, **fields: Any) -> None:
        if "exit_code" in fields:
            self.finished = True
        self.channel.send(event, self.request_id, **fields)

    def result(self, **fields: Any) -> None:
        self._emit("result", **fields, exit_code=0)


class _Parsed(Exception):
    """argparse finished without a command to run: --help/--version text or a usage error."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


class RequestParser(argparse.ArgumentParser):
    """The one-shot parser, but what it would print and its sys.exit become a _Parsed."""

    def _print_message(self, message: str, file: Any = None) -> None:
        self._printed = getattr(self, "_printed", "") + (message or "")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _Parsed(status, getattr(self, "_printed", "") + (message or ""))


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived: stop reading requests."""


class Server:
    """Reads requests, dispatches them to the lanes, answers control requests at once."""

    def __init__(self, channel: Channel, cache_models: int = 2, warmup: bool = True) -> None:
        from arcoseg.cli import build_parser
        from arcoseg.serve_cache import install_cache

        self.channel = channel
        self.build_parser = lambda: build_parser(RequestParser)
        install_cache(cache_models)
        self.heavy = Lane("heavy", channel, warmup)
        self.light = Lane("light", channel)
        self.lanes = (self.heavy, self.light)
        self.reading = False

    def serve(self, stdin: io.BufferedIOBase) -> int:
        """Answer requests until {"shutdown": true} or the end of stdin; return the exit code."""
        self.channel.send("ready", version=__version__, pid=os.getpid())
        for lane in self.lanes:
            lane.start()
        shutdown_id: Any = None
        self.reading = True
        try:
            for raw in iter(stdin.readline, b""):
                line = raw.decode("utf-8", errors="replace").strip()
                done, request_id = self.handle(line) if line else (False, None)
                if done:
                    shutdown_id = request_id
                    self.cancel_all()
                    break
        except Interrupted:
            pass
        self.reading = False
        for lane in self.lanes:
            lane.finish()
        self.channel.send("result", shutdown_id, shutdown=True, exit_code=0)
        return 0

    def handle(self, line: str) -> tuple[bool, Any]:
        """Act on one request line; (True, its id) when it asks for shutdown."""
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as err:  # RecursionError: nested too deeply
            self.refuse(None, f"Malformed request (not JSON: {err!s:.200}): {line[:200]}")
            return False, None
        if not isinstance(request, dict):
            self.refuse(None, f"A request must be a JSON object, got: {line[:200]}")
            return False, None
        raw_id = request.get("id")
        request_id = raw_id if valid_id(raw_id) else None  # never echo a list, a float, true
        kinds = [kind for kind in ("argv", "cancel", "shutdown") if kind in request]
        if len(kinds) > 1:
            self.refuse(request_id, f"A request is one of \"argv\", \"cancel\" or "
                                    f"\"shutdown\", this one has {' and '.join(kinds)}: send "
                                    "them as separate requests.")
            return False, request_id
        if request.get("shutdown") is True:
            return True, request_id
        if kinds in (["argv"], ["cancel"]) and request_id is None:
            # tagged with no id: a client may read 1.0 or true as the id 1 of another request
            what = "command" if kinds == ["argv"] else "cancel"
            self.refuse(None, f'Every {what} request needs an "id" (a non-empty string or an '
                              f"integer) to tag its answer with; got {shown(raw_id)}.",
                        invalid_id=shown(raw_id))
        elif "cancel" in request:
            self.cancel(request_id, request["cancel"])
        elif "argv" in request:
            self.submit(request_id, request["argv"])
        else:
            self.refuse(request_id, 'Unknown request: give "argv" (a command line), "cancel" '
                                    '(a request id) or "shutdown": true.')
        return False, request_id

    def submit(self, request_id: Any, argv: Any) -> None:
        """Parse a command line and queue it in its lane; answer parse results at once."""
        if self.in_use(request_id):
            return
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            self.refuse(request_id, '"argv" must be a non-empty list of strings, e.g. '
                                    '["models", "list"].')
            return
        try:
            args = self.build_parser().parse_args(argv)
        except _Parsed as parsed:
            if parsed.status == 0:  # --help, --version: the text is the result
                self.channel.send("result", request_id, text=parsed.text, exit_code=0)
            else:
                lines = parsed.text.strip().splitlines() or ["Bad command line."]
                self.refuse(request_id, lines[-1], usage="\n".join(lines[:-1]),
                            kind="UsageError")
            return
        except Exception as err:  # noqa: BLE001 - a bad option must never end the worker
            self.refuse(request_id, f"Bad command line: {type(err).__name__}: {err}",
                        kind="UsageError")
            return
        if getattr(args, "serve", False):
            self.refuse(request_id, "`serve` cannot be requested from a running worker.")
            return
        lane = self.light if is_light(args) else self.heavy
        engine_free = (args.command == "models"
                       and getattr(args, "action", None) in ENGINE_FREE_ACTIONS)
        lane.put(Request(request_id, args, RequestReporter(self.channel, request_id),
                         imports_engine=not engine_free))

    def in_use(self, request_id: Any) -> bool:
        """True (and an error event, tagged with no id: the queued or running request's events
        carry it, and its final event must stay its own) if `request_id` is queued or running."""
        if not any(lane.knows(request_id) for lane in self.lanes):
            return False
        self.refuse(None, f"Request id {request_id!r} is already queued or running; use a new "
                          "id per request (this request was not run).", duplicate_id=request_id)
        return True

    def cancel(self, request_id: Any, target: Any) -> None:
        """Stop `target`: drop it from its queue or ask its command to stop."""
        if self.in_use(request_id):
            return
        if not valid_id(target):  # true or 1.0 would stop request 1
            self.refuse(request_id, f'"cancel" takes the id of a request (a non-empty string or '
                                    f"an integer); got {shown(target)}.", cancel=shown(target))
            return
        state = next((s for s in (lane.cancel(target) for lane in self.lanes) if s), "not found")
        self.channel.send("result", request_id, cancel=target, state=state, exit_code=0)

    def cancel_all(self) -> None:
        """Cancel every queued and running request (shutdown, SIGTERM)."""
        for lane in self.lanes:
            lane.cancel_all()

    def refuse(self, request_id: Any, message: str, **fields: Any) -> None:
        """An error event for a request that will not run."""
        fields.setdefault("kind", "InputError")
        self.channel.send("error", request_id, message=message, exit_code=EXIT_USER, **fields)


def valid_id(value: Any) -> bool:
    """Whether `value` can tag a request: a non-empty string or an integer (not true/false,
    which equal 1/0, nor a float like 1.0)."""
    return (isinstance(value, str) and value != "") or (isinstance(value, int)
                                                         and not isinstance(value, bool))


def shown(value: Any) -> Any:
    """`value` as an answer may echo it: scalars as they are (strings cut to 200 characters),
    anything else by its type (a list nested 1000 deep cannot be written back)."""
    if isinstance(value, str):
        return value[:200]
    if value is None or isinstance(value, (bool, int, float)):
        return value if not isinstance(value, float) or math.isfinite(value) else str(value)
    return f"<a JSON {'object' if isinstance(value, dict) else 'array'}>"


def run_server(args: argparse.Namespace) -> int:
    """`arcoseg serve`: keep stdout for the protocol, serve stdin, then end the process (its
    exit code: 0 after a shutdown or the end of stdin)."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints, C libraries: to stderr
    sys.stdout = sys.stderr
    server = Server(Channel(protocol), cache_models=args.cache_models, warmup=args.warmup)
    _install_signals(server)
    CpuWatch().start()  # requests with --threads auto then choose without a 0.25 s sample
    try:
        code = server.serve(sys.stdin.buffer)
        sys.stderr.flush()
        # Every request has ended and its files are closed: skip the interpreter's teardown,
        # which takes seconds once torch is loaded (a client waiting for the exit would wait).
        os._exit(code)
    except Exception as err:  # a bug in the worker itself: say so on the stream, then exit
        server.channel.send("error", None, message=f"Internal error in the worker: {err!r}",
                            exit_code=EXIT_INTERNAL, kind="internal")
        raise


def _install_signals(server: Server) -> None:
    """SIGINT/SIGTERM: cancel everything and end after the running command stops; a second
    signal ends the process at once (files are written atomically: nothing half-written)."""
    received: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        if received:
            os._exit(EXIT_CANCELLED)
        received.append(signum)
        server.cancel_all()
        if server.reading:
            raise Interrupted  # out of the read loop

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
