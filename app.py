"""Sprout in the browser: ``streamlit run app.py``.

This script only sets up the pages; each page in ``views/`` holds layout and calls the
engine. Shared state (the registry of runs, the chosen data and run) is in views/common.py.

The pages are not in a folder named ``pages/`` on purpose: Streamlit 1.67 serves the first
request after a server start in its old multipage mode when that folder exists, running
the requested page without this script (no navigation, no reattaching to a run from the
address, every file of the folder listed as a page).
"""

from pathlib import Path

import streamlit as st

from views.common import PAGES, keep_keras_state, sync_state, warm_up

ROOT = Path(__file__).parent
keep_keras_state()

st.set_page_config(page_title="Sprout · grow an image classifier", page_icon=str(ROOT / "assets" / "logo_icon.svg"),
                   layout="wide", initial_sidebar_state="expanded")
st.logo(str(ROOT / "assets" / "logo.svg"), icon_image=str(ROOT / "assets" / "logo_icon.svg"), size="large")
st.html(ROOT / "assets" / "style.css")
warm_up()  # once per server: TensorFlow loads in the background, so no page waits for it

sync_state()

nav = st.navigation([
    st.Page(PAGES["data"], title="Your images", icon=":material/photo_library:", default=True, url_path="data"),
    st.Page(PAGES["search"], title="Search", icon=":material/travel_explore:", url_path="search"),
    st.Page(PAGES["results"], title="Results", icon=":material/emoji_events:", url_path="results"),
    st.Page(PAGES["try"], title="Try it", icon=":material/photo_camera:", url_path="try"),
    st.Page(PAGES["how"], title="How it works", icon=":material/school:", url_path="how"),
])
with st.sidebar:
    st.caption("Free, no-code image classifiers. Your images stay on this server.")
nav.run()
