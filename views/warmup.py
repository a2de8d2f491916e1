"""Loading TensorFlow (3-5 s) and the pages' modules in the background, once per server process.

app.py starts it when ``streamlit run app.py`` starts the server (the lifespan of its ``st.App``),
and its main() on the first visit to a server started another way. Pages never wait for it: they
read :func:`device_name`, which is None until the thread is done. This module and its thread
never import streamlit (other threads must not call it).
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger("sprout.app")

# Modules the pages import on their first run: loaded here too, so that the first visit to a
# page does not wait for them (networkx, under engine.figures.tree, alone takes most of a second).
PAGE_MODULES = ("pandas", "plotly.graph_objects", "engine.figures.tree", "engine.figures.search",
                "engine.figures.results", "engine.figures.network", "engine.figures.teaching", "engine.search.jobs",
                "engine.data.ingest")


@dataclass
class WarmUp:
    """What the warm-up found: the device's name once TensorFlow has loaded. ``modules`` is set
    once the pages' modules are imported, ``done`` once TensorFlow is too."""

    modules: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    device: str | None = None


_lock = threading.Lock()
_current: list[WarmUp] = []  # the process's one warm-up, once started


def start_warm_up() -> WarmUp:
    """The process's warm-up: started by the first call, in a daemon thread; later calls return it."""
    with _lock:
        if not _current:
            state = WarmUp()
            threading.Thread(target=_load, args=(state,), name="sprout-warm-up", daemon=True).start()
            _current.append(state)
        return _current[0]


def _load(state: WarmUp) -> None:
    try:
        for name in PAGE_MODULES:
            importlib.import_module(name)
        state.modules.set()
        from engine.training import device  # Keras (and TensorFlow) load here, once

        state.device = device.device_name()
    except Exception:  # noqa: BLE001 - a convenience only: a search reports real errors itself
        log.exception("the background warm-up failed")
        state.device = "unknown"
    finally:
        state.modules.set()
        state.done.set()


def wait_for_modules(timeout: float = 60.0) -> None:
    """Start the warm-up and wait until it has imported the pages' modules (1-2 s, once).

    Why: a page script importing the same modules at the same time as the warm-up thread can
    get one half-initialised ("partially initialized module 'pandas'", seen on a page visited
    right after the server started); Python's import locks only prevent a deadlock."""
    start_warm_up().modules.wait(timeout)


def wait_for_tensorflow(timeout: float = 120.0) -> None:
    """Wait until the warm-up has loaded TensorFlow, before a page imports it itself (see
    :func:`wait_for_modules`); at once after the first seconds of a server."""
    start_warm_up().done.wait(timeout)


def device_name() -> str | None:
    """Where training runs (``"CPU (2 cores)"``), or None while TensorFlow is still loading."""
    state = start_warm_up()
    return state.device if state.done.is_set() else None
