"""What this machine gives each search process: how many run at once, their threads, their
GPU and their memory ceiling. Read from the environment when set there, else from the machine.
Plain functions; nothing here imports TensorFlow (the server must not wait for it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.errors import SproutError

MIN_RSS_MB = 512
RSS_SHARE = 0.8    # of the machine's memory, shared by the searches that may run at once


def gpu_count() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else NVIDIA device files."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([p for p in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)])


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _env_int(name: str, minimum: int) -> int | None:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        value = int(text)
    except ValueError:
        raise SproutError(f"{name} must be a whole number; received {text!r}") from None
    if value < minimum:
        raise SproutError(f"{name} must be at least {minimum}; received {value}")
    return value


def max_active() -> int:
    """How many searches may run at once: SPROUT_MAX_ACTIVE, else one per GPU, else one per
    2 CPU cores (at least 1). More wait in the queue."""
    given = _env_int("SPROUT_MAX_ACTIVE", 1)
    if given is not None:
        return given
    gpus = gpu_count()
    return gpus if gpus else max(1, cpu_count() // 2)


def memory_mb() -> int | None:
    """The machine's memory in MB (None where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20)
    except (ValueError, OSError, AttributeError):
        return None


def rss_ceiling_mb(active: int) -> int | None:
    """The most resident memory one search process may use: SPROUT_WORKER_MAX_RSS_MB, else a
    share of the machine's memory (80% split between the searches that may run at once)."""
    given = _env_int("SPROUT_WORKER_MAX_RSS_MB", 1)
    if given is not None:
        return given
    total = memory_mb()
    return None if total is None else max(MIN_RSS_MB, int(total * RSS_SHARE / max(1, active)))


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MB (Linux /proc; None where it cannot be read)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) / 1024 if match else None


def worker_env(slot: int, active: int, share: int = 1, base: dict | None = None) -> dict:
    """The environment of the search process in ``slot`` (0-based, < active): its share of
    the cores as TensorFlow's thread pools, and its own GPU where there are several. ``share``
    processes split one slot's cores (2 for the two runs of a race; they share its GPU)."""
    env = dict(os.environ if base is None else base)
    threads = str(max(1, cpu_count() // max(1, active) // max(1, share)))
    for name in ("SPROUT_INTRA_OP_THREADS", "OMP_NUM_THREADS"):
        env.setdefault(name, threads)
    gpus = gpu_count()
    if gpus > 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        env["CUDA_VISIBLE_DEVICES"] = ids[slot % len(ids)]
    root = str(Path(__file__).resolve().parents[2])  # the folder holding `engine`
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
