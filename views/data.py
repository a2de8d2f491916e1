"""Step 1: bring the images (a folder of class folders, a .zip of one, or the sample)."""

import shutil
import tempfile

import streamlit as st

from engine import paths
from engine.figures.results import class_counts_figure

from engine.data import store
from engine.data.report import FEW_IMAGES  # the data report warns below this many images per class
from engine.errors import SproutError
from views.common import (
    SAMPLE, chosen_size, data_label, forget_finished_run, get_state, go, load_report, new_upload_dir, page_button,
    set_state,
)

SIZES = [16, 24, 28, 32, 40, 48, 56, 64, 96, 128]

st.title("Your images")
st.html('<p class="sprout-hero">Teach a computer to tell your pictures apart. Put the pictures of each kind in its '
        "own folder, drop the folders here, and Sprout grows a neural network that recognises them.</p>")


def _saved(folder_name: str) -> None:
    """A new data set is on disk: choose it and start the uploaders afresh (frees their bytes)."""
    st.session_state.upload_round = st.session_state.get("upload_round", 0) + 1
    set_state("data", folder_name)
    set_state("size", None)
    forget_finished_run()
    st.rerun()


def _failed(message: str, folder=None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    st.session_state.upload_round = st.session_state.get("upload_round", 0) + 1
    st.session_state.data_error = message
    st.rerun()


round_ = st.session_state.get("upload_round", 0)
with st.container(border=True):
    st.html('<span class="sprout-step">Step 1 · choose your pictures</span>')
    drop, zipped, sample = st.columns([5, 4, 3], gap="medium")
    with drop:
        files = st.file_uploader(
            "Drop a folder of images", accept_multiple_files="directory", key=f"folder_{round_}",
            help="One sub-folder per kind of picture, for example flowers/rose/… and flowers/tulip/…")
        st.caption(":material/folder: One sub-folder per class, e.g. `flowers/rose/1.jpg`, `flowers/tulip/7.png`.")
    with zipped:
        archive = st.file_uploader("…or a .zip of that folder", type=["zip"], key=f"zip_{round_}",
                                   help="Best for big sets: one file uploads much faster than thousands.")
        st.caption(":material/folder_zip: Faster for more than a few hundred images.")
    with sample:
        st.markdown("**No pictures at hand?**")
        if st.button("Try the sample", icon=":material/auto_awesome:", type="secondary", key="sample",
                     help="1,797 handwritten digits 0–9, built into Sprout"):
            set_state("data", SAMPLE)
            set_state("size", None)
            forget_finished_run()
            st.session_state.pop("data_error", None)
            st.rerun()
        st.caption(":material/draw: Handwritten digits 0–9 (1,797 images).")
        if st.button("Watch a recorded search", icon=":material/smart_display:", key="watch_demo",
                     help="A search that already ran, replayed step by step: nothing to wait for"):
            st.session_state["replay_pick"] = "demo"  # views/replay.py's recorded demo
            go("replay")

if files:
    st.session_state.pop("data_error", None)
    with st.spinner(f"Saving {len(files):,} files…"):
        dest = new_upload_dir()
        try:
            store.save_upload([(f.name, f.getvalue()) for f in files], dest)
        except SproutError as exc:
            _failed(str(exc), dest)
    _saved(dest.name)

if archive is not None:
    st.session_state.pop("data_error", None)
    with st.spinner("Unpacking the zip…"):
        dest = new_upload_dir()
        try:
            with tempfile.NamedTemporaryFile(suffix=".zip", dir=paths.uploads_dir(), delete=True) as tmp:
                tmp.write(archive.getvalue())
                tmp.flush()
                store.extract_zip(tmp.name, dest / "data")
        except SproutError as exc:
            _failed(str(exc), dest)
    _saved(dest.name)

if st.session_state.get("data_error"):
    st.error(st.session_state.data_error, icon=":material/error:")

token = get_state("data")
if not token:
    with st.container(border=True):
        st.markdown("#### Drop a folder of images or try the sample to start")
        st.caption("A few dozen pictures per class is enough to begin; more pictures give a better network. "
                   "Sprout reads JPEG, PNG, GIF, WebP, BMP and TIFF, in colour or greyscale.")
    st.stop()

try:
    with st.spinner("Looking at your images…"):
        report, thumbs = load_report(token, chosen_size())
except SproutError as exc:
    st.error(f"These images cannot be used yet: {exc}", icon=":material/error:")
    st.caption("Fix the folder and drop it again, or try the sample.")
    st.stop()

st.subheader("What Sprout found")
st.caption(f"Using {data_label(token, report)}.")
c1, c2, c3, c4 = st.columns(4)
c1.metric("Images", f"{report['n_images']:,}")
c2.metric("Classes", len(report["classes"]))
c3.metric("Image size", f"{report['image_size']}×{report['image_size']}")
c4.metric("Colour", "greyscale" if report["channels"] == 1 else "colour")

if report["warnings"]:
    with st.container(border=True):
        st.markdown("**Worth a look**")
        for w in report["warnings"]:
            st.warning(w, icon=":material/info:")
if report["skipped"]:
    with st.expander(f"{len(report['skipped'])} file(s) were not used, and why"):
        st.dataframe([{"file": s["path"], "why": s["reason"]} for s in report["skipped"]],
                     hide_index=True, width="stretch")

left, right = st.columns([5, 6], gap="large")
with left:
    st.markdown("**Images per class**")
    st.plotly_chart(class_counts_figure(report["counts"], few=FEW_IMAGES), key="counts",
                    config={"displayModeBar": False})
    if min(report["counts"].values(), default=0) < FEW_IMAGES:
        st.caption(f"Amber bars are classes with fewer than {FEW_IMAGES} images: add more if you can.")
with right:
    st.markdown(f"**A few of each, as the network will see them ({report['image_size']}×{report['image_size']})**")
    with st.container(key="thumbs", height=360):
        for name, imgs in thumbs.items():
            st.caption(f"{name} · {report['counts'].get(name, 0):,} images")
            if imgs:
                st.image(imgs, width=52)

with st.container(border=True):
    st.html('<span class="sprout-step">Step 2 · image size</span>')
    stats = report.get("size_stats") or {}
    w, h = stats.get("width", {}), stats.get("height", {})
    typical = f"Your images are typically {w.get('median', 0):.0f}×{h.get('median', 0):.0f} pixels. " if w else ""
    st.caption(typical + "Every image is resized to a square. Smaller is faster to search; larger keeps fine detail.")
    options = sorted(set(SIZES) | {report["image_size"]})
    chosen = st.select_slider("Image size (pixels)", options=options, value=report["image_size"], key=f"size_{token}")
    if chosen != report["image_size"]:
        set_state("size", str(chosen))
        st.rerun()

page_button("Next: find a network", "search", key="to_search", icon=":material/arrow_forward:")
