"""Sprout in the browser: ``streamlit run app.py``.

This script only sets up the pages; each page in ``views/`` holds layout and calls the
engine. Shared state (the registry of runs, the chosen data and run) is in views/common.py.

The file has two roles. Streamlit runs it as ``__main__`` for every visit: :func:`main` sets
up the pages. ``streamlit run app.py`` first finds the ``st.App`` below (read, not run) and
serves it, importing this file as a module: the App's lifespan then starts loading TensorFlow
in the background as the server starts (views/warmup.py), so that the first visit to the
Search page shows Start at once instead of waiting 3-5 s.

The pages are not in a folder named ``pages/`` on purpose: Streamlit 1.67 serves the first
request after a server start in its old multipage mode when that folder exists, running
the requested page without this script (no navigation, no reattaching to a run from the
address, every file of the folder listed as a page).
"""

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st

from views.warmup import wait_for_modules

ROOT = Path(__file__).parent


def main() -> None:
    wait_for_modules()  # at once when the lifespan below has already waited; else 1-2 s, once
    from views.common import PAGES, freeze_after_warm_up, sync_state

    st.set_page_config(page_title="Sprout · grow an image classifier",
                       page_icon=str(ROOT / "assets" / "logo_icon.svg"), layout="wide",
                       initial_sidebar_state="expanded")
    st.logo(str(ROOT / "assets" / "logo.svg"), icon_image=str(ROOT / "assets" / "logo_icon.svg"), size="large")
    st.html(ROOT / "assets" / "style.css")
    freeze_after_warm_up()
    sync_state()

    nav = st.navigation([
        st.Page(PAGES["data"], title="Your images", icon=":material/photo_library:", default=True, url_path="data"),
        st.Page(PAGES["search"], title="Search", icon=":material/travel_explore:", url_path="search"),
        st.Page(PAGES["results"], title="Results", icon=":material/emoji_events:", url_path="results"),
        st.Page(PAGES["replay"], title="Replay", icon=":material/replay:", url_path="replay"),
        st.Page(PAGES["try"], title="Try it", icon=":material/photo_camera:", url_path="try"),
        st.Page(PAGES["race"], title="Race", icon=":material/sports_score:", url_path="race"),
        st.Page(PAGES["how"], title="How it works", icon=":material/school:", url_path="how"),
    ])
    with st.sidebar:
        st.caption("Free, no-code image classifiers. Your images stay on this server.")
    nav.run()


@asynccontextmanager
async def lifespan(_app):
    """The server's start: begin the warm-up, and serve once the pages' modules are in (1-2 s)."""
    await asyncio.to_thread(wait_for_modules)
    from views.common import freeze_after_warm_up

    freeze_after_warm_up()
    yield


if __name__ == "__main__":
    main()
else:
    app = st.App(Path(__file__), lifespan=lifespan)
