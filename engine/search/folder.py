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

:class:`RunFolder` writes every one of these files: whole files are replaced atomically by
:func:`engine.files.atomic_write` (temp file, fsync, ``os.replace``). ``trials.jsonl``
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
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from engine.errors import SproutError
from engine.files import (
    LABELS, atomic_write, atomic_write_json, disk_errors, read_json, read_labels, to_json, write_all, write_labels,
)
from engine.nas.architecture import Architecture

TRIALS = "trials.jsonl"
STATE = "state.json"
DATASET = "dataset.json"
SUMMARY = "summary.json"
MODEL = "best_model.keras"
RUN_FORMAT = "sprout-run/1"
GO_AHEAD = ".continue"  # step mode: the server writes the id of the trial that may start (loop.wait_to_go_on)


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
                write_all(fd, line)
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
            raise SproutError(f"{self.root} is a file, not a folder; choose another out_dir folder.")
        if self.exists():
            raise SproutError(f"{self.root} already holds a search run; "
                              "resume it (resume=True) or choose another out_dir folder.")
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
        for tmp in self.root.glob(".*.tmp*"):  # engine.files.temp_path's names
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

    def write_summary(self, summary: dict) -> None:
        self.write(SUMMARY, summary)

    def save_model(self, model, class_names: list[str]) -> dict:
        """Write best_model.keras (a Keras model) and labels.json (its class names, in output
        order); their absolute paths as ``{"keras", "labels"}``. On a full disk the previous
        model is kept (DiskFullError)."""
        atomic_write(self.model_path, model.save)
        write_labels(self.root, class_names)
        return {"keras": str(self.model_path.resolve()), "labels": str(self.labels_path.resolve())}

    def read_labels(self) -> list[str]:
        """The class names of best_model.keras' outputs (SproutError when labels.json is missing or bad)."""
        return read_labels(self.root)
