"""Writing files so that a reader (or a kill -9) never sees half of one, and labels.json.

:func:`atomic_write` is the one way Sprout replaces a whole file: the new content goes to
a temp file in the same folder (``.<stem>.tmp<suffix>``, so a Keras ``.keras`` name keeps
its suffix), is fsynced, and replaces the file with ``os.replace``; a reader sees the old
file or the new one. On any failure the temp file is removed and the old file is kept; a
full disk (ENOSPC, or a full quota) raises :class:`engine.errors.DiskFullError`, one plain
line. JSON is written strict (NaN and infinities become null; browsers reject them).

``labels.json`` (a JSON list of class names; ``labels[i]`` names model output ``i``) is
written beside every saved or exported model by :func:`write_labels` and read by
:func:`read_labels`. No TensorFlow here.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from engine.errors import DiskFullError, SproutError, is_disk_full

LABELS = "labels.json"


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
    return str(value)


def to_json(value: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``value`` (see :func:`_clean`)."""
    return json.dumps(_clean(value), indent=indent, ensure_ascii=False, allow_nan=False)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


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


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to file descriptor ``fd`` (os.write may write only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def temp_path(path: Path) -> Path:
    """Where :func:`atomic_write` puts the new content of ``path`` until it replaces it."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Replace ``path`` with the file that ``write(temp)`` writes at a temp path beside it.

    The temp file is fsynced before it replaces ``path``. On any failure it is removed and
    ``path`` is left as it was; a full disk raises DiskFullError, other errors stay what
    they are."""
    path = Path(path)
    tmp = temp_path(path)
    with disk_errors(path):
        try:
            write(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (see :func:`atomic_write`)."""
    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)

    atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    """Replace ``path`` with ``value`` as strict JSON (see :func:`atomic_write`)."""
    atomic_write_bytes(path, (to_json(value) + "\n").encode("utf-8"))


def write_labels(folder: str | os.PathLike, labels: list[str]) -> Path:
    """Write ``folder/labels.json``: the class names in model output order. Its path."""
    path = Path(folder) / LABELS
    atomic_write_json(path, [str(label) for label in labels])
    return path


def read_labels(folder: str | os.PathLike) -> list[str]:
    """The class names in ``folder/labels.json`` (``labels[i]`` names output ``i``).

    SproutError when the file is missing or is not a JSON list of names."""
    path = Path(folder) / LABELS
    try:
        value = read_json(path)
    except FileNotFoundError:
        raise SproutError(f"expected the class names in {path}; there is no such file") from None
    except (OSError, ValueError) as exc:
        raise SproutError(f"expected {path} to be a JSON list of class names; it cannot be read ({exc})") from None
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise SproutError(f"expected {path} to be a JSON list of class names; received {type(value).__name__}")
    return [str(v) for v in value]
