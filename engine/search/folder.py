"""The run folder: everything a search writes, written so that a kill -9 at any moment
leaves it readable.

Layout (see docs/contracts.md)::

    RUN_DIR/
      trials.jsonl          one JSON line per finished, failed or stopped trial (the commit point)
      trials/<id>/          architecture.json + weights.npz (Architecture.save)
      state.json            config, searcher state, limits, rng state, budget used, phase
      dataset.json          data report, class names, image size, channels, split indices
      summary.json          written at the end: best trial, test accuracy, timings
      best_model.keras      the final model (plain Keras, no custom objects)
      labels.json           the class names, in the order of best_model.keras' outputs (a JSON list)

Whole files are replaced atomically (temp file, fsync, ``os.replace``). ``trials.jsonl``
lines are appended with flush + fsync; a torn last line (the process died mid-write) is
ignored when reading. A trial's folder is written before its line, so every line names a
complete folder; folders without a line are leftovers of the trial in flight and are
removed on resume. No TensorFlow here.

A full disk (ENOSPC, or a full quota) while writing raises
:class:`engine.errors.DiskFullError`, a SproutError with one plain line (and an OSError):
the file being replaced keeps its previous content, no temp file is left behind, and a
trials.jsonl line that could not be written whole is cut off again, so the run folder
stays readable and the run can be resumed once there is space.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

from engine.nas.architecture import Architecture
from engine.errors import DiskFullError, SproutError, is_disk_full

TRIALS = "trials.jsonl"
STATE = "state.json"
DATASET = "dataset.json"
SUMMARY = "summary.json"
MODEL = "best_model.keras"
LABELS = "labels.json"
RUN_FORMAT = "sprout-run/1"


def _clean(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays turned into plain Python and NaN/inf into None,
    so that the JSON written is strict (browsers' JSON.parse rejects NaN)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _clean(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def to_json(value: Any, indent: int | None = 1) -> str:
    return json.dumps(_clean(value), indent=indent, ensure_ascii=False, allow_nan=False)


def disk_full_error(path: Path) -> DiskFullError:
    """The plain-language error for a write to ``path`` that found the disk full."""
    path = Path(path)
    return DiskFullError(f"the disk is full (no space left on device) while writing {path.name} in {path.parent}; "
                         "free some space, then resume the run")


@contextmanager
def disk_errors(path: Path):
    """Turn a disk-full OSError raised inside the block into :class:`DiskFullError`."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader sees the old or the new file.

    On any failure the temp file is removed and ``path`` is left as it was; a full disk
    raises DiskFullError.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with disk_errors(path):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                _write_all(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, to_json(value) + "\n")


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line and make it durable before returning.

    If the line cannot be written whole (a full disk), what was written of it is cut off
    again, so the file still ends with a complete line; a full disk raises DiskFullError.
    """
    line = (to_json(record, indent=None) + "\n").encode("utf-8")
    with disk_errors(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except BaseException:
                try:
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                except OSError:
                    pass  # readers skip a torn last line, and resume cuts it off
                raise
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to file descriptor ``fd`` (os.write may write only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line of ``path``; a torn or garbled line (a kill mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # torn last line
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
    return out


def is_run_folder(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / STATE).exists() or (path / TRIALS).exists())


class RunFolder:
    """Reads and writes one run folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ----- paths ---------------------------------------------------------------------
    @property
    def trials_path(self) -> Path:
        return self.root / TRIALS

    @property
    def model_path(self) -> Path:
        return self.root / MODEL

    @property
    def labels_path(self) -> Path:
        return self.root / LABELS

    def trial_dir(self, trial_id: str) -> Path:
        return self.root / "trials" / str(trial_id)

    # ----- creation --------------------------------------------------------------------
    def exists(self) -> bool:
        return is_run_folder(self.root)

    def create(self) -> None:
        """Make the folder for a new run; refuse one that holds a run or other files."""
        self.check_new()
        (self.root / "trials").mkdir(parents=True, exist_ok=True)

    def check_new(self) -> None:
        """Raise SproutError unless a new run can be created here (absent or empty folder)."""
        if self.root.exists() and not self.root.is_dir():
            raise SproutError(f"{self.root} is a file, not a folder; choose another --out folder.")
        if self.exists():
            raise SproutError(f"{self.root} already holds a search run; resume it (--resume) or choose another folder.")
        if self.root.is_dir() and any(p for p in self.root.iterdir() if not p.name.startswith(".")):
            raise SproutError(f"{self.root} is not empty; choose an empty or new folder for the run.")

    # ----- trials --------------------------------------------------------------------
    def read_trials(self) -> list[dict]:
        return read_jsonl(self.trials_path)

    def save_trial(self, record: dict, arch: Architecture) -> None:
        """Write the trial's folder, then commit its line (DiskFullError when the disk is full:
        a folder without its line is a leftover that resume removes)."""
        folder = self.trial_dir(record["id"])
        with disk_errors(folder / "weights.npz"):
            arch.save(folder)
        append_jsonl(self.trials_path, record)

    def load_architecture(self, trial_id: str, weights: bool = True) -> Architecture:
        folder = self.trial_dir(trial_id)
        if not weights:
            return Architecture.from_json((folder / "architecture.json").read_text(encoding="utf-8"))
        return Architecture.load(folder)

    def repair_trials(self) -> bool:
        """Cut a torn last line off trials.jsonl (a kill mid-append), so that the next
        append starts on a line of its own. True when something was cut."""
        path = self.trials_path
        if not path.exists():
            return False
        with open(path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return False
            fh.truncate(data.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def remove_uncommitted(self, committed: Iterable[str]) -> list[str]:
        """Delete trial folders without a trials.jsonl line (the trial in flight at a crash)."""
        keep = {str(c) for c in committed}
        removed = []
        trials = self.root / "trials"
        if trials.is_dir():
            for folder in trials.iterdir():
                if folder.is_dir() and folder.name not in keep:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder.name)
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        return removed

    # ----- whole files -------------------------------------------------------------------
    def read(self, name: str) -> dict | None:
        path = self.root / name
        if not path.exists():
            return None
        try:
            return read_json(path)
        except (OSError, ValueError):
            return None

    def write(self, name: str, value: Any) -> None:
        atomic_write_json(self.root / name, value)

    def read_state(self) -> dict | None:
        return self.read(STATE)

    def write_state(self, state: dict) -> None:
        self.write(STATE, state)

    def read_dataset(self) -> dict | None:
        return self.read(DATASET)

    def write_dataset(self, info: dict) -> None:
        self.write(DATASET, info)

    def read_summary(self) -> dict | None:
        return self.read(SUMMARY)
