"""Step 4: show the network a picture and see what it says."""

import numpy as np
import streamlit as st

from engine.errors import SproutError
from engine.figures.results import top_predictions_figure
from views.warmup import wait_for_tensorflow
from engine.search.labels import run_label
from views.common import empty_state, model_labels, run_images, run_model, run_picker, run_test_indices, to_display

CHART_CONFIG = {"displayModeBar": False}

st.title("Try it")
st.html('<p class="sprout-hero">Show your network a new picture and see what it thinks.</p>')

snap = run_picker("Network from search run", key="try_run")
model = run_model(snap) if snap else None
if model is None:
    empty_state("There is no finished network to try yet. Start a search; when it ends, come back here.",
                "Go to the search", "search", key="to_search_try")
    st.stop()

names = model_labels(snap)
size, channels = int(snap["image_size"]), int(snap["channels"])  # dataset.json's, as the snapshot holds them
st.caption(f"From the search run {run_label(snap)}. The network knows {len(names)} classes: "
           f"{', '.join(map(str, names[:12]))}" + ("…" if len(names) > 12 else ""))

source = st.segmented_control("Picture from", ["Upload", "Camera", "Your data"], default="Upload", key="try_source",
                              help="‘Your data’ picks a random test image the network never trained on.")
picture: bytes | None = None
pixels: np.ndarray | None = None
round_ = st.session_state.get("try_round", 0)
if source == "Camera":
    shot = st.camera_input("Take a photo", key=f"camera_{round_}")
    picture = shot.getvalue() if shot is not None else None
elif source == "Your data":
    test = run_test_indices(snap)
    if st.button("Pick a random test image", icon=":material/casino:", key="random_test") and test:
        st.session_state.try_index = int(np.random.default_rng().choice(test))
    index = st.session_state.get("try_index")
    if index is not None:
        imgs = run_images(snap, [index])
        if imgs:
            pixels = imgs[0]
    elif not test:
        st.caption("This run's images are no longer on the server; upload a picture instead.")
else:
    upload = st.file_uploader("Upload a picture", type=["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"],
                              key=f"picture_{round_}")
    picture = upload.getvalue() if upload is not None else None

if picture is not None:
    from engine.data.decode import decode_image

    try:
        pixels = decode_image(picture, size, channels)
    except SproutError as exc:
        st.error(f"This picture cannot be read: {exc}", icon=":material/error:")
        st.stop()

if pixels is None:
    st.caption("Upload a picture, take one with your camera, or pick one of your test images.")
    st.stop()

wait_for_tensorflow()  # noqa: E402 - not while the warm-up is importing it
from engine.training.evaluation import predict  # noqa: E402 - TensorFlow only once there is something to predict

probs = np.asarray(predict(model, pixels[None].astype(np.uint8)))[0]
top = int(np.argmax(probs))
left, right = st.columns([1, 2], gap="large")
with left:
    if picture is not None:
        st.image(picture, caption="Your picture", width=220)
    with st.container(key="thumbs_seen"):
        st.image(to_display(pixels), caption=f"What the network sees ({size}×{size})", width=110)
with right:
    if probs[top] >= 0.5:
        st.subheader(f"It's **{names[top]}**", anchor=False)
        st.caption(f"{probs[top]:.0%} sure.")
    else:
        st.subheader(f"Maybe **{names[top]}**?", anchor=False)
        st.caption(f"Only {probs[top]:.0%} sure: the picture may not look like any class it learnt, or like "
                   "several of them.")
    st.plotly_chart(top_predictions_figure(probs, names), key="top", config=CHART_CONFIG)
