"""One search in its own process: ``python -m engine.search.worker RUN_DIR DATA CONFIG_JSON [--resume]``.

The app's registry (engine/search/jobs.py) starts one such process per search, so a crash,
an out-of-memory kill or a native fault in TensorFlow ends that search only, never the server.
The worker runs :func:`engine.search.loop.run_search` and appends each of its events as one
JSON line to ``RUN_DIR/.events.jsonl`` (the server's supervisor thread reads them into the
snapshot the pages show). The file names start with a dot: a new run folder may hold them
(``RunFolder.check_new`` ignores dot files).

Signals: the first SIGTERM or SIGINT stops the search as the Stop button does (the trial in
flight ends within one batch; the best network so far is tested and saved). A worker whose
server has gone (its parent changed) leaves at once, without saving: the run is then
"interrupted" and can be resumed, losing only the trial in flight.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

EVENTS = ".events.jsonl"
LOG = ".worker.log"
PARENT_CHECK_S = 0.5
BATCH_EVERY_S = 0.2        # batch events are sent at most this often (a file line each)
EXIT_ORPHANED = 70         # the exit status of a worker whose server went away


class EventWriter:
    """Appends events as JSON lines (one write and flush each: a reader never sees half a
    line for long, and a kill loses at most the line being written)."""

    def __init__(self, path: Path):
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the process's life
        self._last_batch = 0.0

    def __call__(self, event: dict) -> None:
        if event.get("type") == "batch":
            now = time.monotonic()
            last = event.get("batch") == event.get("n_batches")
            if now - self._last_batch < BATCH_EVERY_S and not last:
                return
            self._last_batch = now
        self.file.write(json.dumps(event, default=str, allow_nan=True) + "\n")
        self.file.flush()


def watch_parent(parent: int, every: float = PARENT_CHECK_S) -> threading.Thread:
    """A daemon thread that ends this process when its parent (the server) is gone."""

    def loop() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(EXIT_ORPHANED)
            time.sleep(every)

    thread = threading.Thread(target=loop, name="sprout-parent-watch", daemon=True)
    thread.start()
    return thread


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM / SIGINT set ``stop`` (the registry sends SIGKILL when a stop is not enough)."""

    def on_signal(signum, frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


def run(run_dir: Path, data_source: str, config_dict: dict, resume: bool, emit, stop: threading.Event) -> int:
    """Run the search, sending its events to ``emit``; a failure is sent as a ``failed`` event
    (with the message people see) and recorded in state.json. Returns the exit status."""
    from engine.errors import SproutError
    from engine.search.loop import SearchConfig, run_search

    try:
        config = SearchConfig.from_dict(config_dict)
        # TensorFlow loads before the search's clock starts, as it had in the server before searches
        # had processes of their own: the budget is the search's, not this process's start-up
        from engine.training import device  # noqa: F401

        run_search(data_source, run_dir, config, events=emit, stop=stop, resume=resume)
        return 0
    except SproutError as exc:
        message = str(exc)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the page in words
        import traceback

        traceback.print_exc()
        message = f"internal error ({type(exc).__name__}: {exc})"
    emit({"type": "failed", "error": message})
    mark_failed(run_dir, message)
    return 1


def mark_failed(run_dir: Path, message: str) -> None:
    """Record a failed run in its state.json (if it has one) so later servers list it as failed."""
    from engine.search.folder import RunFolder
    from engine.search.status import Phase

    folder = RunFolder(run_dir)
    try:
        state = folder.read_state()
        if state is not None:
            folder.write_state({**state, "phase": Phase.FAILED, "error": message})
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in args
    args = [a for a in args if a != "--resume"]
    if len(args) != 3:
        print("expected: RUN_DIR DATA CONFIG_JSON [--resume]; received " + " ".join(args), file=sys.stderr)
        return 2
    stop = threading.Event()
    stop_on_signals(stop)  # first: a Stop pressed while TensorFlow loads is kept
    watch_parent(os.getppid())
    run_dir, data_source, config_json = Path(args[0]), args[1], args[2]
    emit = EventWriter(run_dir / EVENTS)
    code = run(run_dir, data_source, json.loads(config_json), resume, emit, stop)
    emit.file.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # every file of the run is written and fsynced: skip TensorFlow's slow interpreter teardown
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
