"""Benchmark of image ingestion: ``python -m bench.ingest [DATA] [--runs N]``.

Measures, as the median of ``--runs`` runs each:

* cold ``engine.data.ingest.load`` (an empty temporary cache every run) and warm load (cache filled);
* the CLI end to end (``python -m engine inspect DATA``, new process, cold and warm cache);
* decoding with and without the thread pool, on DATA and on generated large JPEGs, which
  is what decides when :func:`engine.data.decode.map_images` uses threads.

Writes ``bench/results/ingest.md``. DATA defaults to the shared Fashion-MNIST subset
(``../shared/datasets/fashion-mnist-small/train`` from the repository root).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from engine.data import ingest as data

from engine.data import decode
from engine.data.dataset import Dataset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = "../shared/datasets/fashion-mnist-small/train"  # relative to the repository root
RESULTS = REPO / "bench" / "results" / "ingest.md"


def median_seconds(fn, runs: int) -> float:
    """Median wall time of ``runs`` calls of ``fn()``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_load(source) -> Dataset:
    """``data.load`` into a fresh, empty cache folder."""
    with tempfile.TemporaryDirectory() as cache:
        return data.load(source, cache_dir=cache)


def with_threads(forced: bool | None):
    """Context: force the decode thread pool on (True), off (False) or leave the rule (None)."""
    class _Ctx:
        def __enter__(self):
            self.saved = decode.THREAD_MIN_FILES, decode.THREAD_MIN_MEAN_BYTES
            if forced is True:
                decode.THREAD_MIN_FILES, decode.THREAD_MIN_MEAN_BYTES = 0, 0
            elif forced is False:
                decode.THREAD_MIN_FILES = sys.maxsize

        def __exit__(self, *exc):
            decode.THREAD_MIN_FILES, decode.THREAD_MIN_MEAN_BYTES = self.saved
    return _Ctx()


def make_large_jpegs(folder: Path, n: int = 120) -> Path:
    """``n`` 1280x960 JPEG photos-like files (smooth noise) in two classes under ``folder``."""
    rng = np.random.default_rng(0)
    for k in range(n):
        small = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
        target = folder / f"class_{k % 2}" / f"{k:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(small).resize((1280, 960), Image.Resampling.BICUBIC).save(target, quality=90)
    return folder


def cli_seconds(source: Path, home: Path) -> float:
    """Wall time of ``python -m engine inspect source`` with SPROUT_HOME=home."""
    env = {**os.environ, "SPROUT_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine", "inspect", str(source)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"CLI failed: {done.stderr.strip()}")
    return time.perf_counter() - start


def machine(load_before: tuple[float, ...]) -> list[str]:
    """Lines describing the machine and how busy it was."""
    load = lambda xs: " / ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    return [
        f"- Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {os.cpu_count()} logical cores ({platform.processor() or platform.machine()}), "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, Pillow {PIL.__version__}, numpy {np.__version__}",
        f"- Load average (1/5/15 min) before: {load(load_before)}, after: {load(os.getloadavg())} "
        "(other processes share the machine; times are wall-clock)",
    ]


def busy_note(load_before: tuple[float, ...]) -> list[str]:
    """A caveat when other work already kept every core busy (threads cannot gain then)."""
    cores = os.cpu_count() or 1
    if max(load_before[0], os.getloadavg()[0]) < cores:
        return []
    return ["", f"Note: the load average was at or above the {cores} cores during this run, so little "
            "CPU was free for a second decoding thread and timings are noisy; judge the thread-pool "
            "comparison above on a quiet machine."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    source = (REPO / args.data).resolve()  # an absolute DATA stays as it is
    runs = args.runs
    load_before = os.getloadavg()

    report = cold_load(source).report
    cold = median_seconds(lambda: cold_load(source), runs)
    with tempfile.TemporaryDirectory() as cache:
        data.load(source, cache_dir=cache)
        warm = median_seconds(lambda: data.load(source, cache_dir=cache), runs)
    with tempfile.TemporaryDirectory() as homes:
        cli_cold = statistics.median(cli_seconds(source, Path(homes) / f"h{k}") for k in range(runs))
        cli_seconds(source, Path(homes) / "warm")
        cli_warm = statistics.median(cli_seconds(source, Path(homes) / "warm") for _ in range(runs))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        large = make_large_jpegs(Path(tmp) / "large")
        for label, folder in (("this data", source), ("120 JPEGs 1280x960", large)):
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(runs):  # alternate, so both see the same background load
                for forced in (False, True):
                    with with_threads(forced):
                        times[forced].append(median_seconds(lambda: cold_load(folder), 1))
            timing = {k: statistics.median(v) for k, v in times.items()}
            rows.append(f"| {label} | {timing[False]:.2f} s | {timing[True]:.2f} s |")

    lines = [
        "# Ingestion benchmark (`python -m bench.ingest`)",
        "",
        *machine(load_before),
        f"- Data: `{args.data}`: {report.n_images:,} images, {len(report.classes)} classes "
        f"({', '.join(f'{c} {n}' for c, n in report.counts.items())}), "
        f"input {report.image_size}x{report.image_size}x{report.channels}, {len(report.skipped)} skipped",
        f"- Median of {runs} runs each.",
        "",
        "| measurement | seconds |",
        "|---|---|",
        f"| `data.load`, cold (empty cache: read, hash, decode, write cache) | {cold:.2f} |",
        f"| `data.load`, warm (read + hash files, load cached arrays) | {warm:.2f} |",
        f"| `python -m engine inspect`, new process, cold cache | {cli_cold:.2f} |",
        f"| `python -m engine inspect`, new process, warm cache | {cli_warm:.2f} |",
        "",
        "Decoding on a thread pool vs. serially (cold `data.load`):",
        "",
        "| data | serial | thread pool |",
        "|---|---|---|",
        *rows,
        "",
        "Rule in `engine.data.decode.map_images`: use the thread pool only when there are at least "
        f"{decode.THREAD_MIN_FILES} files averaging at least {decode.THREAD_MIN_MEAN_BYTES // 1024} KiB "
        "(Pillow releases the GIL while decoding big files; for tiny files Python overhead dominates).",
        *busy_note(load_before),
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
