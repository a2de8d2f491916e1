"""Shared test fixtures: an isolated Sprout home, and a small generated image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


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
