"""The short words the pages show for a run and its numbers: the one-line run label of every
run selector and caption, the name of the data, the device split into kind and detail, and
counts in short units. Pure functions of plain dicts and numbers (no files, no clock).

A run is described by whatever is known about it, from a listing (:meth:`Registry.list_runs`)
or a snapshot (:meth:`Registry.snapshot`): a run just created has only its id; a run of an
earlier server may have only its state.json. Every field of a label is either there or left
out, so a label never holds an empty field.
"""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import PurePath
from typing import Any

SEPARATOR = " · "
SAMPLE_NAME = "sample digits"
MAX_CLASSES_NAMED = 3
# Run ids and upload folders are named by the server: YYYYMMDD-HHMMSS-xxxxxx (UTC).
_STAMP = re.compile(r"^(\d{8}-\d{6})-[0-9a-f]{6}$")


def run_time(run: dict) -> str | None:
    """When the run started, in the server's local time: ``"2 Dec 05:59"``; from ``created``
    (ISO 8601, UTC) or else from the run id's time stamp; None when neither can be read."""
    when = _parse_iso(run.get("created")) or _parse_stamp(run.get("run_id"))
    if when is None:
        return None
    local = when.astimezone()
    return f"{local.day} {local:%b %H:%M}"


def _parse_iso(text: Any) -> _dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)


def _parse_stamp(name: Any) -> _dt.datetime | None:
    match = _STAMP.match(name) if isinstance(name, str) else None
    if match is None:
        return None
    try:
        return _dt.datetime.strptime(match.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None


def data_name(source: Any = None, class_names: list | None = None) -> str | None:
    """The data a run searched, in a few words: ``"sample digits"``; else its first class names
    (``"cat, dog, fox +2 more"``); else the folder's name (``"pets"``, or ``"uploaded images"``
    for a server-named upload folder); None when nothing is known."""
    source_text = str(source) if source else ""
    if source_text == "sample":
        return SAMPLE_NAME
    names = [str(n) for n in (class_names or []) if str(n)]
    if names:
        shown = ", ".join(names[:MAX_CLASSES_NAMED])
        more = len(names) - MAX_CLASSES_NAMED
        return shown + (f" +{more} more" if more > 0 else "")
    if not source_text:
        return None
    folder = PurePath(source_text).name
    if not folder:
        return None
    return "uploaded images" if _STAMP.match(folder) else folder


def best_accuracy(run: dict) -> tuple[str, float] | None:
    """``("test", 0.97)`` when the run has a final test accuracy, else ``("best", 0.98)`` for its
    best validation accuracy; None when no network has a score yet."""
    test = _first_number(run.get("test_accuracy"), (run.get("final") or {}).get("test_accuracy"))
    if test is not None:
        return "test", float(test)
    best = _first_number(run.get("best_val_accuracy"), (run.get("best") or {}).get("val_accuracy"))
    if best is not None:
        return "best", float(best)
    return None


def _first_number(*values: Any) -> float | None:
    return next((float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)), None)


def run_label(run: dict) -> str:
    """One line naming a run: start time, data, searcher, status, accuracy, e.g.
    ``"2 Dec 05:59 · sample digits · bayesian · done · test 97%"``. Unknown fields are left
    out; the run id stands in for the time when that cannot be read. ``run`` is a listing
    or a snapshot (both have ``run_id``, ``status``, ``searcher``, ``created``)."""
    fields = [run_time(run) or str(run.get("run_id") or "a search"),
              data_name(run.get("data_source"), run.get("class_names")),
              _word(run.get("searcher")), _word(run.get("status"))]
    score = best_accuracy(run)
    if score is not None:
        fields.append(f"{score[0]} {score[1]:.0%}")
    return SEPARATOR.join(f for f in fields if f)


def _word(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def device_parts(name: str | None) -> tuple[str, str | None]:
    """``"GPU (NVIDIA H200) x2"`` -> ``("GPU", "NVIDIA H200 x2")``; ``"CPU (2 cores)"`` ->
    ``("CPU", "2 cores")``: a short kind for a metric and its detail for the line below it."""
    if not name:
        return "–", None
    match = re.match(r"^\s*(\S+)\s*\((.*)\)\s*(.*)$", name)
    if match is None:
        return name, None
    detail = " ".join(p for p in (match.group(2).strip(), match.group(3).strip()) if p)
    return match.group(1), detail or None


def short_count(n: float | None) -> str:
    """A count in short units, at most three digits before the unit: ``843``, ``12.3 k``,
    ``170 k``, ``1.2 M`` (for metrics that must fit a narrow column)."""
    if n is None:
        return "–"
    n = float(n)
    if abs(n) < 999.5:
        return f"{n:.0f}"
    for unit, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        value = n / scale
        if abs(value) < 999.5 or unit == "G":
            return f"{value:.1f} {unit}" if abs(value) < 99.95 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable: the last unit always returns")
