"""``python -m engine search | evaluate | export`` as a user runs them (subprocesses).

Real TensorFlow on the built-in digits at 8x8: the session's shared search (conftest.py, run
with this command) and what it printed, evaluate and export of its model, a search killed
with SIGKILL and resumed, and the one-line errors (exit status 2).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"^trial \d+  .+  (val \d\.\d{3}  \(best \d\.\d{3}\)|failed: .+|stopped)  \d+\.\d s$")


def _env(home: Path) -> dict:
    return {**os.environ, "SPROUT_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def _engine(home: Path, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT, env=_env(home),
                          capture_output=True, text=True, timeout=timeout)


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines(keepends=True):
        if line.endswith("\n"):
            out.append(json.loads(line))
    return out


@pytest.mark.slow
def test_search_prints_a_line_per_trial(finished_run):
    out, side = finished_run.out, finished_run.config["image_size"]
    lines = finished_run.stdout.splitlines()
    trial_lines = [line for line in lines if re.match(r"trial \d+  ", line)]
    records = _lines(out / "trials.jsonl")
    assert len(trial_lines) == len(records) == finished_run.config["max_trials"]
    assert f"trial cap of {finished_run.config['max_trials']} reached" in lines
    assert all(PROGRESS.match(line) for line in trial_lines), trial_lines
    assert trial_lines[0].startswith("trial 0  seed architecture  val ")
    children = [(line, r) for line, r in zip(trial_lines[1:], records[1:]) if r["status"] == "ok"]
    assert len(children) >= 2 and all(r["parent_id"] is not None for _, r in children)
    assert all(line.startswith(f"trial {r['id']}  ") and f"val {r['val_accuracy']:.3f}" in line for line, r in children)
    assert lines[0].startswith(f"data: 1797 images, 10 classes, {side}x{side}x1")
    assert lines[-1].startswith("best: trial ") and "test " in lines[-1]
    for name in ("trials.jsonl", "state.json", "dataset.json", "summary.json", "best_model.keras", "labels.json"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_evaluate_prints_json(finished_run, capfd):
    """Through engine.cli.main in this process (TensorFlow is loaded once; the command-line
    process itself is tested by the shared search and the one-line errors below)."""
    from engine.cli import main

    code = main(["evaluate", str(finished_run.out / "best_model.keras"), "sample"])
    printed = capfd.readouterr()
    assert code == 0, printed.err[-2000:]
    report = json.loads(printed.out)
    assert report["n"] == 1797 and 0 <= report["accuracy"] <= 1
    assert set(report["per_class"]) == {str(i) for i in range(10)}
    assert sum(c["n"] for c in report["per_class"].values()) == 1797


@pytest.mark.slow
def test_export_keras(finished_run, tmp_path, capfd):
    from engine.cli import main

    target = tmp_path / "exported.keras"
    code = main(["export", str(finished_run.out), "--format", "keras", "--out", str(target)])
    printed = capfd.readouterr()
    assert code == 0, printed.err[-2000:]
    assert Path(printed.out.strip().splitlines()[-1]) == target and target.is_file()


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume(tmp_path, monkeypatch, capsys):
    """A search process killed with SIGKILL mid-trial, then ``search --resume``: the resume runs
    through engine.cli.main in this process (the same command, without a second TensorFlow start)."""
    from engine.cli import main

    out = tmp_path / "run"
    # a generous budget and a trial cap: the kill comes after two trials however busy the machine
    cmd = [sys.executable, "-m", "engine", "search", "sample", "--out", str(out), "--budget", "150",
           "--max-epochs", "3", "--image-size", "8", "--searcher", "random", "--max-trials", "3",
           "--recipe", "final_epochs=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(tmp_path / "home"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 150
        while len(_lines(out / "trials.jsonl")) < 2:
            assert proc.poll() is None, "the search ended before its second trial"
            assert time.monotonic() < deadline, "no second trial in time"
            time.sleep(0.1)
        # wait until the next trial is in flight (a few batches in), then kill -9
        while True:
            state = json.loads((out / "state.json").read_text())
            if state.get("in_flight") or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "killed mid-run, not finished"
    before = _lines(out / "trials.jsonl")
    used_before = json.loads((out / "state.json").read_text())["budget_used_s"]
    assert not (out / "summary.json").exists()

    monkeypatch.setenv("SPROUT_HOME", str(tmp_path / "home"))
    code = main(["search", "sample", "--out", str(out), "--resume"])
    printed = capsys.readouterr()
    assert code == 0, printed.err[-2000:]
    assert "resumed: " in printed.out
    after = _lines(out / "trials.jsonl")
    assert after[:len(before)] == before, "every finished trial is kept, same ids and values"
    assert [r["id"] for r in after] == [str(i) for i in range(len(after))]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "done" and summary["n_trials"] == len(after) == 3
    assert summary["wall_s"] >= used_before, "the budget used before the kill is counted"
    assert (out / "best_model.keras").exists()
    leftovers = {p.name for p in (out / "trials").iterdir()} - {r["id"] for r in after}
    assert not leftovers, "the half-written trial folder was removed"


@pytest.mark.slow
def test_errors_are_one_line_and_exit_2(tmp_path, images_dir):
    home = tmp_path / "home"
    line = _one_line_error(_engine(home, "search", tmp_path / "missing", "--out", tmp_path / "r1", "--budget", 30))
    assert "missing" in line
    one_class = tmp_path / "one"
    (one_class / "circle").mkdir(parents=True)
    for p in sorted((images_dir / "circle").iterdir())[:3]:
        (one_class / "circle" / p.name).write_bytes(p.read_bytes())
    _one_line_error(_engine(home, "search", one_class, "--out", tmp_path / "r2", "--budget", 30))
    assert not (tmp_path / "r2").exists() or not any((tmp_path / "r2").iterdir()), "no half-made run folder"
    _one_line_error(_engine(home, "search", "sample", "--out", tmp_path / "r3", "--budget", "-5"))
    _one_line_error(_engine(home, "search", "sample", "--out", tmp_path / "r3", "--budget", "10",
                            "--searcher", "genetic"))
    _one_line_error(_engine(home, "search", "sample", "--out", tmp_path / "r3"))
    (tmp_path / "r4").mkdir()
    (tmp_path / "r4" / "notes.txt").write_text("mine")
    assert "not empty" in _one_line_error(_engine(home, "search", "sample", "--out", tmp_path / "r4", "--budget", 10))
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    assert "not a Sprout run folder" in _one_line_error(
        _engine(home, "export", not_a_run, "--format", "keras", "--out", tmp_path / "m.keras"))
    _one_line_error(_engine(home, "export", not_a_run, "--format", "onnx", "--out", tmp_path / "m.onnx"))
    _one_line_error(_engine(home, "evaluate", tmp_path / "nothing.keras", "sample"))
    (tmp_path / "junk.keras").write_bytes(b"not a model")
    _one_line_error(_engine(home, "evaluate", tmp_path / "junk.keras", "sample"))


def test_engine_field_names_become_flags_in_the_printed_error(tmp_path, capsys):
    """The engine says max_epochs / image_size / resume=True / out_dir; the command line prints its flags."""
    from engine.cli import flag_words, main

    assert main(["search", "sample", "--out", str(tmp_path / "run"), "--budget", "10", "--image-size", "4"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == "error: --image-size must be between 8 and 512 pixels; received 4"
    assert flag_words("max_epochs must be at least 1; received 0") == "--max-epochs must be at least 1; received 0"
    assert (flag_words("/runs/out_dir already holds a search run; resume it (resume=True) "
                       "or choose another out_dir folder.")
            == "/runs/out_dir already holds a search run; resume it (--resume) or choose another --out folder.")
    assert flag_words("seed_epochs and image_sizes stay") == "seed_epochs and image_sizes stay"
