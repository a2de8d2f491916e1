"""Shared test fixtures: an isolated Sprout home, a small generated image folder, and one real
search run that the command-line, search and background-run tests all read."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# Tests never download pretrained weights (engine.training.trunk); "auto" then starts from scratch.
os.environ["SPROUT_WEIGHTS_URL"] = "none"


@pytest.fixture(autouse=True)
def _isolated_sprout_home(tmp_path_factory, monkeypatch):
    """Point SPROUT_HOME at a fresh temporary folder so no test writes into the repo."""
    monkeypatch.setenv("SPROUT_HOME", str(tmp_path_factory.mktemp("sprout_home")))


@pytest.fixture
def images_dir(tmp_path) -> Path:
    """A folder with classes "circle" and "square", 12 distinct 24x24 RGB PNGs each.

    Image k of a class has a red background of value 10*k (circle) or a blue one (square),
    so every file is different and the class is visible in the pixels.
    """
    root = tmp_path / "images"
    for name, colour in (("circle", (1, 0, 0)), ("square", (0, 0, 1))):
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(12):
            pixels = np.zeros((24, 24, 3), np.uint8)
            pixels[:, :] = np.array(colour) * (10 * k + 20)
            pixels[8:16, 8:16] = 255
            Image.fromarray(pixels).save(folder / f"{k:02d}.png")
    return root


@dataclass(frozen=True)
class FinishedRun:
    """A search run that ended normally (exit status 0), and what its command printed."""

    root: Path          # a runs folder, as the app's registry keeps them
    run_id: str
    out: Path           # root / run_id: the run folder
    home: Path          # SPROUT_HOME of the command
    config: dict        # the options it was started with (SearchConfig fields)
    stdout: str
    stderr: str


#: The shared run: the built-in digits at 8x8 (one conv block: a trial takes seconds), a
#: trial cap that decides when the search ends (the budget is generous so a busy machine
#: still reaches it), and a one-epoch fine-tune.
SHARED_RUN = dict(budget_s=300, searcher="bayesian", seed=0, image_size=8, max_epochs=2, max_trials=4)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> FinishedRun:
    """One real search, run once per session with ``python -m engine search`` as a user runs it.

    Tests only read it (its files, its model, a fresh registry's view of it); a test that
    changes a run makes its own. Its folder is named like the app's runs, so a
    :class:`engine.search.jobs.Registry` over ``root`` lists it.
    """
    from engine.search.jobs import new_run_id

    home = tmp_path_factory.mktemp("shared_home")
    root = tmp_path_factory.mktemp("shared_runs")
    run_id = new_run_id()
    c = SHARED_RUN
    cmd = [sys.executable, "-m", "engine", "search", "sample", "--out", str(root / run_id),
           "--budget", str(c["budget_s"]), "--searcher", c["searcher"], "--seed", str(c["seed"]),
           "--image-size", str(c["image_size"]), "--max-epochs", str(c["max_epochs"]),
           "--max-trials", str(c["max_trials"]), "--recipe", "final_epochs=1"]
    env = {**os.environ, "SPROUT_HOME": str(home), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the shared search failed: {result.stderr[-3000:]}"
    return FinishedRun(root, run_id, root / run_id, home, dict(c), result.stdout, result.stderr)

