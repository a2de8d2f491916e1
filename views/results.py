"""Step 3: the best network, how well it does, and the downloads."""

import json
from pathlib import Path

import streamlit as st

from engine.figures.network import network_dot
from engine.figures.results import confusion_figure, per_class_figure
from engine.figures.search import prediction_figure
from engine.figures.style import trial_by_id
from engine.search.labels import short_count
from engine.search.status import RunStatus
from views.warmup import wait_for_tensorflow
from views.common import (
    empty_state, is_active, model_labels, page_button, run_dir, run_images, run_picker, status_words, to_display,
)

CHART_CONFIG = {"displayModeBar": False}
MAX_GALLERY = 24

st.title("Results")
snap = run_picker("Search run", key="results_run")
if snap is None:
    empty_state("No search yet. Choose your images and start one: the results appear here.",
                "Start a search", "search", key="to_search_empty")
    st.stop()

final = snap.get("final")
if is_active(snap) and not final:
    st.info(f"{status_words(snap)} · the final results appear here when the search ends. The best network so far "
            "is shown below.", icon=":material/hourglass_top:")
    page_button("Watch the search", "search", key="to_search_live", primary=False)
elif snap.get("status") == RunStatus.FAILED:
    st.error(snap.get("error") or "The search failed.", icon=":material/error:")

best = snap.get("best") or {}
best_trial = trial_by_id(snap, best.get("trial_id"))
if best_trial is None:
    st.info("No network finished training in this run, so there is nothing to show yet.", icon=":material/info:")
    st.stop()

names = snap.get("class_names") or []
st.html('<p class="sprout-hero">Your classifier is ready. It was tested on images that were kept aside '
        "during the whole search, so the test accuracy is what you can expect on new pictures like yours.</p>"
        if final else '<p class="sprout-hero">The best network found so far.</p>')
c1, c2, c3, c4 = st.columns(4)
c1.metric("Test accuracy", f"{final['test_accuracy']:.1%}" if final else "–",
          help="Share of the held-back test images the final network labels correctly.")
c2.metric("Validation accuracy", f"{best['val_accuracy']:.1%}", help="What the search saw while choosing.")
c3.metric("Networks tried", len(snap.get("trials", [])))
n_params = int(best_trial.get("n_params") or 0)
c4.metric("Size (weights)", short_count(n_params), help=f"{n_params:,} weights (trainable numbers) in the network.")

# ----- the best network and per-class scores --------------------------------------------------
left, right = st.columns([2, 3], gap="large")
with left:
    st.markdown(f"#### The best network: #{best_trial['id']}")
    st.caption(f"`{best_trial.get('summary', '')}` · read from the top (your image) to the bottom (the answer).")
    with st.container(height=520, border=False):
        st.graphviz_chart(network_dot(best_trial["architecture"]))
with right:
    if final:
        st.markdown("#### How well each class is recognised")
        st.caption("**Precision**: when it says *cat*, how often it is a cat. **Recall**: of all the cats, how "
                   "many it finds.")
        st.plotly_chart(per_class_figure(final.get("per_class") or {}), key="per_class", config=CHART_CONFIG)
        st.markdown("#### What gets mixed up")
        st.caption("Rows are the true class, columns what the network said. The diagonal is right; anything else "
                   "is a mix-up.")
        st.plotly_chart(confusion_figure(final.get("confusion") or [], names), key="confusion",
                        config=CHART_CONFIG)

# ----- mistakes ---------------------------------------------------------------------------
if final:
    wrong = final.get("misclassified") or []
    st.markdown("#### Test images it got wrong")
    if not wrong:
        st.success("None! Every test image was labelled correctly.", icon=":material/celebration:")
    else:
        st.caption(f"{len(wrong)} of {final.get('n', '?')} test images. Look for a pattern: blurry pictures, "
                   "wrong labels in your folders, or two classes that really look alike.")
        shown = wrong[:MAX_GALLERY]
        images = run_images(snap, [int(w["index"]) for w in shown])
        with st.container(key="thumbs_wrong"):
            if images and len(images) == len(shown):
                captions = [f"{w['true']} → {w['pred']}" + (f" ({w['confidence']:.0%})" if w.get("confidence") else "")
                            for w in shown]
                st.image([to_display(i) for i in images], caption=captions, width=96)
            else:
                st.dataframe([{"file": w["path"], "true": w["true"], "said": w["pred"]} for w in shown],
                             hide_index=True)
        if len(wrong) > MAX_GALLERY:
            st.caption(f"…and {len(wrong) - MAX_GALLERY} more.")

# ----- how good were the guesses ----------------------------------------------------------------
with st.expander("How good were Sprout's predictions?", expanded=False):
    st.caption("Before training each network, Sprout predicted its accuracy. Points near the dashed line were "
               "good guesses; wide bars mean it was unsure and was exploring.")
    st.plotly_chart(prediction_figure(snap), key="predictions", config=CHART_CONFIG)

# ----- downloads --------------------------------------------------------------------------------
st.markdown("#### Take it with you")
files = snap.get("files") or {}
keras_path = files.get("keras")
if not keras_path or not Path(keras_path).exists():
    st.caption("The downloads appear when the search has finished and saved its best network.")
    st.stop()

labels = model_labels(snap)
out_dir = run_dir(snap) / "exports"


def _export(fmt: str) -> bytes:
    """Build an export once (kept in the run folder, engine.training.export) and return its bytes."""
    wait_for_tensorflow()
    from engine.training.export import export

    target = out_dir / {"savedmodel": "sprout_saved_model.zip", "tflite": "sprout_model.tflite"}[fmt]
    if not target.exists():
        export(keras_path, fmt, target, labels)
    return target.read_bytes()


d1, d2, d3, d4 = st.columns(4)
d1.download_button("Keras (.keras)", data=lambda: Path(keras_path).read_bytes(), file_name="sprout_model.keras",
                   mime="application/octet-stream", on_click="ignore", icon=":material/download:", type="primary",
                   key="dl_keras", help="For Python: keras.models.load_model. Takes raw images, no preprocessing.")
d2.download_button("SavedModel (.zip)", data=lambda: _export("savedmodel"), file_name="sprout_saved_model.zip",
                   mime="application/zip", on_click="ignore", icon=":material/download:", key="dl_savedmodel",
                   help="TensorFlow SavedModel, zipped: for TensorFlow Serving and the TF.js converter.")
d3.download_button("TFLite (.tflite)", data=lambda: _export("tflite"), file_name="sprout_model.tflite",
                   mime="application/octet-stream", on_click="ignore", icon=":material/download:", key="dl_tflite",
                   help="TensorFlow Lite: for phones and small devices.")
d4.download_button("Class names (.json)", data=json.dumps(labels, indent=1, ensure_ascii=False),
                   file_name="labels.json", mime="application/json", on_click="ignore", icon=":material/download:",
                   key="dl_labels", help="The class names in the order of the model's outputs.")

size, channels = snap.get("image_size"), snap.get("channels")  # dataset.json's, as the snapshot holds them
mode = "L" if channels == 1 else "RGB"
st.markdown("**Use it in Python**")
st.code(f'''import json
import numpy as np
import keras
from PIL import Image

model = keras.models.load_model("sprout_model.keras")
labels = json.load(open("labels.json"))  # class names, in output order

image = Image.open("my_picture.jpg").convert("{mode}").resize(({size}, {size}), Image.BILINEAR)
pixels = np.asarray(image, dtype="uint8").reshape(1, {size}, {size}, {channels})  # raw 0-255 pixels
probabilities = model.predict(pixels)[0]
print(labels[int(probabilities.argmax())], float(probabilities.max()))
''', language="python")
page_button("Try it on a picture", "try", key="to_try", icon=":material/photo_camera:")
