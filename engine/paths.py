"""Where Sprout writes: one home folder, nothing outside it.

``SPROUT_HOME`` (default: ``.sprout`` in the current working directory) holds
``cache/`` (decoded datasets by content hash), ``uploads/`` (what users dropped into the
app) and ``runs/`` (one folder per search). Run folders named on the command line with
``--out`` are the user's choice and are used as given.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The folder all of Sprout's own files go under."""
    return Path(os.environ.get("SPROUT_HOME", ".sprout")).resolve()


def cache_dir() -> Path:
    return home() / "cache"


def uploads_dir() -> Path:
    return home() / "uploads"


def runs_dir() -> Path:
    return home() / "runs"
