"""What every page shares: the one Registry of runs, the chosen data and run, navigation.

The chosen data (``data``: an upload folder's name or ``sample``) and run (``run``: a run
id) live in ``st.session_state`` and are mirrored into ``st.query_params`` by
:func:`sync_state` (called by app.py on every rerun), so a reload or a second tab with the
same address finds them again, and switching pages (which clears the query string) does
not lose them.
"""

from __future__ import annotations

import gc
import re
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import streamlit as st

from engine import paths
from engine.errors import SproutError
from engine.search.labels import run_label
from engine.search.status import ACTIVE, RunStatus
from views.warmup import wait_for_tensorflow

PAGES = {
    "data": "views/data.py",
    "search": "views/search.py",
    "results": "views/results.py",
    "try": "views/try_it.py",
    "race": "views/race.py",
    "how": "views/how.py",
    "replay": "views/replay.py",
}
STATE_KEYS = ("data", "run", "size")
NEW_SEARCH = "wants_new_search"  # session flag: this tab left the running search to start another one
SAMPLE = "sample"
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")


# ----- shared, process-wide objects ---------------------------------------------------
def freeze_after_warm_up() -> None:
    """Once the background warm-up has loaded TensorFlow and the pages' modules, put every object
    alive then out of the garbage collector's sight (``gc.freeze``, once per process).

    Streamlit collects garbage after every script run (``runner.postScriptGC``) and, with Keras
    loaded, calls ``keras.backend.clear_session()``, which collects too. Over TensorFlow's objects
    each full collection took 230 ms here, twice per rerun, on every live refresh of every tab.
    Frozen, both take under a millisecond; what the warm-up loaded stays loaded anyway."""
    with _FREEZE_LOCK:
        if _FROZEN:
            return
        _FROZEN.append(True)

    def freeze() -> None:
        from views.warmup import start_warm_up

        start_warm_up().done.wait()
        gc.collect()
        gc.freeze()

    threading.Thread(target=freeze, name="sprout-gc-freeze", daemon=True).start()


_FREEZE_LOCK = threading.Lock()
_FROZEN: list[bool] = []


@st.cache_resource(show_spinner=False)
def registry():
    """The process-wide registry of search runs (thread-safe; shared by every session). Each
    search runs in a process of its own, so Streamlit's clean-up after a rerun never touches it."""
    from engine.search.jobs import Registry

    return Registry(paths.runs_dir())


# ----- state that survives reloads ----------------------------------------------------
def sync_state() -> None:
    """Query string -> session (a reload or a shared link) and session -> query string
    (after a page switch cleared it). Unsafe values are dropped."""
    for key in STATE_KEYS:
        from_url = st.query_params.get(key)
        if from_url and _TOKEN.match(from_url):
            st.session_state[key] = from_url
        elif from_url:
            del st.query_params[key]
        value = st.session_state.get(key)
        if value and st.query_params.get(key) != value:
            st.query_params[key] = value


def forget_finished_run() -> None:
    """New data was chosen: stop showing a finished run (a running one stays on show)."""
    if not is_active(snapshot(get_state("run"))):
        set_state("run", None)


def set_state(key: str, value: str | None) -> None:
    """Choose (or forget) the data, run or image size, in the session and the address."""
    if key == "run" and value != st.session_state.get("run"):
        st.session_state.pop("selected", None)  # the network clicked in another run's tree
    if value:
        st.session_state[key] = value
        st.query_params[key] = value
    else:
        st.session_state.pop(key, None)
        if key in st.query_params:
            del st.query_params[key]


def get_state(key: str) -> str | None:
    return st.session_state.get(key)


def chosen_size() -> int | None:
    """The image size picked on the data page (None: the one the data suggests)."""
    size = get_state("size")
    return int(size) if size and size.isdigit() else None


def go(page: str) -> None:
    """Switch page keeping the chosen data and run in the address."""
    st.switch_page(PAGES[page], query_params={k: st.session_state[k] for k in STATE_KEYS if st.session_state.get(k)})


def page_button(label: str, page: str, key: str, primary: bool = True, icon: str | None = None) -> None:
    if st.button(label, key=key, type="primary" if primary else "secondary", icon=icon):
        go(page)


# ----- data sources -------------------------------------------------------------------
def new_upload_dir() -> Path:
    """A fresh, server-named folder for one upload."""
    name = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    folder = paths.uploads_dir() / name
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def source_of(token: str | None):
    """What engine.data.ingest.load takes for a data token: "sample" or the upload folder."""
    if not token:
        return None
    if token == SAMPLE:
        return SAMPLE
    if not _TOKEN.match(token):
        raise SproutError("That data set's name is not valid. Please upload it again.")
    folder = paths.uploads_dir() / token
    if not folder.is_dir():
        raise SproutError("That upload is no longer on this server. Please upload the images again.")
    return folder


@st.cache_data(show_spinner=False, max_entries=16)
def load_report(token: str, image_size: int | None = None,
                per_class: int = 6) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """The data report (as a dict) and a few decoded thumbnails per class (as the network sees them)."""
    from engine.data import ingest as data

    ds = data.load(source_of(token), image_size=image_size)
    thumbs: dict[str, list[np.ndarray]] = {}
    for k, name in enumerate(ds.class_names):
        idx = np.flatnonzero(ds.labels == k)[:per_class]
        thumbs[name] = [to_display(ds.images[i]) for i in idx]
    return ds.report.to_dict(), thumbs


def to_display(img: np.ndarray) -> np.ndarray:
    """(S, S, 1) greyscale to (S, S) for st.image; RGB unchanged."""
    return img[:, :, 0] if img.ndim == 3 and img.shape[-1] == 1 else img


def data_label(token: str | None, report: dict | None = None) -> str:
    if token == SAMPLE:
        return "the built-in sample (handwritten digits)"
    if report and report.get("classes"):
        return f"your {report['n_images']:,} images in {len(report['classes'])} classes"
    return "your images"


# ----- runs ---------------------------------------------------------------------------
def snapshot(run_id: str | None) -> dict | None:
    """The run's snapshot, or None when there is no such run (the id is then forgotten)."""
    if not run_id:
        return None
    try:
        return registry().snapshot(run_id)
    except (KeyError, FileNotFoundError, SproutError):
        set_state("run", None)
        return None


def is_active(snap: dict | None) -> bool:
    return bool(snap) and snap.get("status") in ACTIVE


STATUS_WORDS = {
    RunStatus.QUEUED: ("Waiting for a free place", ":material/hourglass_empty:"),
    RunStatus.STARTING: ("Getting ready", ":material/hourglass_top:"),
    RunStatus.RUNNING: ("Searching", ":material/eco:"),
    RunStatus.FINISHING: ("Finishing: testing the best network", ":material/science:"),
    RunStatus.DONE: ("Finished", ":material/check_circle:"),
    RunStatus.STOPPED: ("Stopped", ":material/stop_circle:"),
    RunStatus.FAILED: ("Something went wrong", ":material/warning:"),
    RunStatus.INTERRUPTED: ("Interrupted", ":material/pause_circle:"),
}


def status_words(snap: dict) -> str:
    words, icon = STATUS_WORDS.get(snap.get("status"), (str(snap.get("status")), ":material/circle:"))
    return f"{icon} {words}"


@st.cache_data(ttl=3, show_spinner=False)
def list_runs() -> list[dict]:
    """Registry.list_runs (reads every run folder on disk), at most every 3 s."""
    try:
        return registry().list_runs()
    except Exception:  # noqa: BLE001 - a broken runs folder must not take the page down
        return []


def run_picker(label: str = "Run", key: str = "run_picker") -> dict | None:
    """A select box of runs (newest first) when there are several; returns the chosen snapshot.

    With no run chosen yet, a running search is chosen (a new tab reattaches to it), unless this
    tab asked for a new search of its own (``NEW_SEARCH``)."""
    runs = list_runs()
    current = get_state("run")
    ids = [r["run_id"] for r in sorted(runs, key=lambda r: str(r.get("created") or ""), reverse=True)]
    if current and current not in ids:
        ids.insert(0, current)
    if len(ids) > 1:
        by_id = {r["run_id"]: r for r in runs}

        def fmt(rid: str) -> str:
            # the chosen run's label from its snapshot, as fresh as the page (the listing is cached
            # for 3 s, and a run started in the last seconds is not in it yet)
            fresh = snapshot(rid) if rid == current or rid not in by_id else None
            return run_label(fresh or by_id.get(rid) or {"run_id": rid})

        choice = st.selectbox(label, ids, index=ids.index(current) if current in ids else None, format_func=fmt,
                              key=key, placeholder="Choose an earlier search")
        if choice is not None and choice != current:
            set_state("run", choice)
            current = choice
    elif not current and not st.session_state.get(NEW_SEARCH):
        live = [r["run_id"] for r in runs if r.get("status") in ACTIVE]
        if live:  # a new tab finds the search that is running
            set_state("run", live[0])
            current = live[0]
    return snapshot(current)


def empty_state(message: str, button_label: str | None = None, page: str | None = None, key: str = "empty_go") -> None:
    with st.container(border=True):
        st.markdown(f"#### {message}")
        if button_label and page:
            page_button(button_label, page, key=key)


# ----- a run's files and data ---------------------------------------------------------
def run_dir(snap: dict) -> Path:
    return Path(snap.get("run_dir") or (paths.runs_dir() / snap["run_id"]))


def run_dataset_info(snap: dict) -> dict:
    """dataset.json of a run: source, image size, channels, split indices ({} when missing)."""
    from engine.search.folder import RunFolder

    try:
        return RunFolder(run_dir(snap)).read_dataset() or {}
    except (OSError, ValueError):
        return {}


@st.cache_resource(show_spinner=False, max_entries=2)
def _dataset(source: str, image_size: int, channels: int):
    from engine.data import ingest as data

    return data.load(source, image_size=image_size, channels=channels)


def run_images(snap: dict, indices: list[int]) -> list[np.ndarray] | None:
    """Images (S, S, C) of the run's data set by index, as the network sees them (None when the data is gone)."""
    info = run_dataset_info(snap)
    if not info.get("source"):
        return None
    try:
        ds = _dataset(info["source"], int(info["image_size"]), int(info["channels"]))
    except SproutError:
        return None
    return [ds.images[i] for i in indices if 0 <= i < len(ds.images)]


def run_test_indices(snap: dict) -> list[int]:
    return list((run_dataset_info(snap).get("split") or {}).get("test") or [])


@st.cache_resource(show_spinner="Loading the network…", max_entries=4)
def _model(path: str, mtime: float):
    wait_for_tensorflow()
    from engine.training.export import load_model

    return load_model(path)


def run_model(snap: dict):
    """The run's final Keras model (cached), or None when it has none yet."""
    path = (snap.get("files") or {}).get("keras")
    if not path or not Path(path).exists():
        return None
    return _model(path, Path(path).stat().st_mtime)


def model_labels(snap: dict) -> list[str]:
    """The final model's class names in output order (the run's labels.json); the run's
    class names when that file cannot be read."""
    from engine.search.folder import RunFolder

    try:
        return RunFolder(run_dir(snap)).read_labels()
    except SproutError:
        return list(snap.get("class_names") or [])
