"""The server's memory across many finished searches (issue #15): each search runs in a worker
process, so its memory (TensorFlow, the data, the networks) goes back to the OS when it exits
and the server's own resident memory stays flat.

Run: ``.venv/bin/python -m bench.server_rss [--searches 20]``. Writes ``bench/results/server_rss.md``.

This process plays the server: it keeps one :class:`engine.search.jobs.Registry` (as the app
does), runs tiny real searches one after another (the built-in sample at 8x8, two networks of
one epoch each), and notes its own RSS after each one ends, and each worker's peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

from engine.search import machine
from engine.search.config import SearchConfig
from engine.search.jobs import Registry

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "server_rss.md"
FLAT_MB = 20.0  # the server may grow this much over the whole series and still count as flat


def peak_rss(registry: Registry, run_id: str, stop: threading.Event, out: list[float]) -> None:
    """Appends the highest RSS (MB) of the run's worker seen until ``stop``."""
    peak = 0.0
    while not stop.is_set():
        pid = registry.worker_pid(run_id)
        if pid is not None:
            peak = max(peak, machine.rss_mb(pid) or 0.0)
        stop.wait(0.2)
    out.append(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=20)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    registry = Registry(Path(tempfile.mkdtemp(prefix="sprout-rss-")) / "runs", max_active=1)
    config = SearchConfig(budget_s=300, searcher="random", seed=0, image_size=8, max_epochs=1, max_trials=2,
                          recipe={"final_epochs": 1})
    gc.collect()
    start_mb = machine.rss_mb(os.getpid())
    server_mb, worker_mb, seconds, statuses = [], [], [], []
    for k in range(args.searches):
        t0 = time.monotonic()
        run_id = registry.start("sample", SearchConfig(**{**config.to_dict(), "seed": k}))
        stop = threading.Event()
        watcher = threading.Thread(target=peak_rss, args=(registry, run_id, stop, worker_mb), daemon=True)
        watcher.start()
        registry.wait(run_id, 600)
        stop.set()
        watcher.join()
        statuses.append(registry.snapshot(run_id)["status"])
        gc.collect()
        server_mb.append(machine.rss_mb(os.getpid()))
        seconds.append(time.monotonic() - t0)
        print(f"search {k + 1}: {statuses[-1]}, {seconds[-1]:.1f} s, worker peak {worker_mb[-1]:.0f} MB, "
              f"server {server_mb[-1]:.1f} MB", flush=True)
    registry.close()
    growth = server_mb[-1] - server_mb[0]
    lines = [
        "# Server memory across finished searches",
        "",
        f"Measured by `bench/server_rss.py` on {time.strftime('%Y-%m-%d %H:%M')}: Linux {platform.release()}, "
        f"Python {platform.python_version()}, {machine.cpu_count()} cores, {machine.memory_mb() or 0:,} MB of memory.",
        "",
        f"{args.searches} searches, one after another, each in its own worker process (the built-in sample at "
        "8x8, two networks of one epoch, a one-epoch fine-tune). This process kept the registry, as the server does.",
        "",
        f"- Statuses: {', '.join(sorted(set(statuses)))} ({statuses.count('done')} done).",
        f"- Server RSS: {start_mb:.1f} MB before the first search, {server_mb[0]:.1f} MB after the first, "
        f"{server_mb[-1]:.1f} MB after the last ({growth:+.1f} MB from the first to the last; flat means within "
        f"{FLAT_MB:g} MB: **{'flat' if abs(growth) <= FLAT_MB else 'NOT flat'}**).",
        f"- Worker peak RSS: {min(worker_mb):.0f}-{max(worker_mb):.0f} MB per search, all given back at exit.",
        f"- Seconds per search: {min(seconds):.1f}-{max(seconds):.1f}.",
        "",
        "| search | status | s | worker peak (MB) | server after (MB) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {k + 1} | {st} | {s:.1f} | {w:.0f} | {m:.1f} |"
              for k, (st, s, w, m) in enumerate(zip(statuses, seconds, worker_mb, server_mb))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
