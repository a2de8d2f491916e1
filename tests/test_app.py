"""Every page of the app under Streamlit's AppTest: uploads, the sample, a short search run to
its end, the results and Try it. No browser; each ``at.run()`` is one full script rerun."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = {name: f"views/{name}.py" for name in ("data", "search", "results", "try_it", "how")}
SEARCH_CAP_S = 170


@pytest.fixture(autouse=True)
def _fresh_registry():
    """The registry lives in st.cache_resource: give each test one under its own SPROUT_HOME."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()


def _png(value: int, size: int = 20, colour: bool = True) -> bytes:
    pixels = np.zeros((size, size, 3) if colour else (size, size), np.uint8)
    pixels[...] = value
    pixels[size // 4: size // 2, size // 4: size // 2] = 255 - value
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def _folder_files(prefix: str = "pets") -> list[tuple[str, bytes, str]]:
    files = [(f"{prefix}/{cls}/{i:02d}.png", _png(7 * i + (120 if cls == "dog" else 0)), "image/png")
             for cls in ("cat", "dog") for i in range(12)]
    files += [(f"{prefix}/bird/{i}.png", _png(200 + 10 * i), "image/png") for i in range(3)]
    files.append((f"{prefix}/cat/notes.txt", b"not an image", "text/plain"))
    return files


def _app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def _start_search(at, budget_s: int, epochs: int) -> None:
    """On the Search page: a budget in seconds, the most epochs per network, then Start."""
    at.number_input(key="budget_s").set_value(budget_s)
    at.number_input(key="epochs").set_value(epochs)
    at.button(key="start").click()
    at.run()


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "warning", "error", "info", "success") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def _plotly_specs(at: AppTest) -> dict[str, dict]:
    """Figures on the page by widget key (or position), as plotly JSON."""
    out = {}
    for i, el in enumerate(at.get("plotly_chart")):
        spec = json.loads(el.proto.spec)
        out[el.proto.id.split("-")[-1] if el.proto.id else str(i)] = spec
    return out


def _chart_traces(at: AppTest) -> list[list[str]]:
    return [[t.get("name", "") for t in json.loads(el.proto.spec)["data"]] for el in at.get("plotly_chart")]


def test_data_page_starts_empty_and_says_what_to_do():
    at = _app()
    assert "Drop a folder of images or try the sample to start" in _texts(at)
    labels = [u.proto.label for u in at.get("file_uploader")]
    assert labels == ["Drop a folder of images", "…or a .zip of that folder"]


def test_folder_upload_shows_the_report():
    at = _app()
    at.get("file_uploader")[0].set_value(_folder_files())
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "27" and metrics["Classes"] == "3" and metrics["Image size"] == "20×20"
    text = _texts(at)
    assert "Class 'bird' has only 3 images" in text
    assert "skipped" in text
    upload = at.query_params["data"]
    saved = Path(__import__("engine.paths", fromlist=["x"]).uploads_dir()) / upload
    assert (saved / "pets" / "cat" / "00.png").is_file()
    # thumbnails per class and the images-per-class chart
    assert len(at.get("image")) >= 3
    counts = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert counts["data"][0]["x"] == ["bird", "cat", "dog"] or sorted(counts["data"][0]["x"]) == ["bird", "cat", "dog"]
    # the uploader was reset (a new key) so the bytes are not kept
    assert all(not u.value for u in at.get("file_uploader"))


def test_zip_upload_and_image_size():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, _ in _folder_files("flowers"):
            zf.writestr(name, data)
    at = _app()
    at.get("file_uploader")[1].set_value([("flowers.zip", buf.getvalue(), "application/zip")])
    at.run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["Images"] == "27"
    slider = at.select_slider[0]
    slider.set_value(32)
    at.run()
    assert {m.label: m.value for m in at.metric}["Image size"] == "32×32"
    assert at.query_params["size"] == "32"


def test_unusable_upload_is_a_plain_error_and_the_app_keeps_working():
    at = _app()
    one_class = [(f"x/only/{i}.png", _png(i * 9), "image/png") for i in range(5)]
    at.get("file_uploader")[0].set_value(one_class)
    at.run()
    assert not at.exception, at.exception
    assert at.error and "cannot be used" in at.error[0].value
    bad_zip = [("broken.zip", b"PK\x03\x04 not really a zip", "application/zip")]
    at.get("file_uploader")[1].set_value(bad_zip)
    at.run()
    assert not at.exception and "not a valid zip" in at.error[0].value
    at.button(key="sample").click()
    at.run()
    assert not at.exception and {m.label: m.value for m in at.metric}["Classes"] == "10"


def test_pages_without_a_run_show_what_to_do_next():
    at = _app()
    for page, words in (("search", "First choose your images"), ("results", "No search yet"),
                        ("try_it", "no finished network"), ("how", "Grow, don't restart")):
        at.switch_page(PAGES[page])
        at.run()
        assert not at.exception, (page, at.exception)
        assert words in _texts(at), page


def test_start_is_there_while_tensorflow_still_loads(monkeypatch):
    """The Search page never waits for the background warm-up: Start is shown at once, the
    device line says it is still checking, and names the device on a later run."""
    from views import warmup

    loading = warmup.WarmUp()
    loading.modules.set()  # the pages' modules are in (the server waits for them); TensorFlow is not
    monkeypatch.setattr(warmup, "_current", [loading])  # a warm-up that has not finished
    at = _app(data="sample")
    at.switch_page(PAGES["search"])
    at.run()
    assert not at.exception, at.exception
    assert at.button(key="start").label == "Start the search"
    # a form's submit button: the page draws it with its own code, where a plain button waits for the
    # browser to fetch the code of every input above it (issue #20; bench/start_time.py)
    assert at.button(key="start").proto.is_form_submitter
    assert "Runs on: checking this computer…" in _texts(at)
    loading.device = "CPU (7 test cores)"
    loading.done.set()
    at.run()
    assert "Runs on: **CPU (7 test cores)**" in _texts(at)


def test_search_page_says_when_the_chosen_images_are_gone():
    """The form is drawn before the data is read (views.search.start_form): unusable data replaces it."""
    at = _app(data="20990101-000000-abcdef")  # an upload folder that is not on this server
    at.switch_page(PAGES["search"])
    at.run()
    assert not at.exception, at.exception
    assert at.error and "no longer on this server" in at.error[0].value, _texts(at)
    assert "start" not in [b.key for b in at.button], "the form stays when its data is unusable"


def test_the_server_freezes_what_its_warm_up_loaded():
    """Streamlit collects garbage after every rerun; once TensorFlow is loaded that cost 230 ms a
    collection until the app froze the warm-up's objects (views.common.freeze_after_warm_up)."""
    import gc

    from views.warmup import start_warm_up

    _app()
    assert start_warm_up().done.wait(120)
    t0 = time.monotonic()
    while gc.get_freeze_count() == 0:
        assert time.monotonic() - t0 < 10, "nothing was frozen after the warm-up"
        time.sleep(0.05)
    assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()  # TensorFlow's objects, not a handful


@pytest.mark.slow
def test_sample_search_results_and_try_it(tmp_path, monkeypatch):
    at = _app()
    at.button(key="sample").click()
    at.run()
    at.select_slider[0].set_value(16)          # small images: a faster search
    at.run()
    assert {m.label: m.value for m in at.metric}["Image size"] == "16×16"
    at.button(key="to_search").click()
    at.run()
    assert not at.exception, at.exception
    _start_search(at, budget_s=15, epochs=2)
    assert not at.exception, at.exception
    run_id = at.query_params["run"]
    assert run_id

    t0, seen_live = time.monotonic(), False
    while time.monotonic() - t0 < SEARCH_CAP_S:
        time.sleep(1)
        at.run()
        assert not at.exception, at.exception
        heads = [h.value for h in at.subheader]
        if any("Searching" in h for h in heads):
            seen_live = True
        if any(("Finished" in h) or ("Stopped" in h) or ("wrong" in h) for h in heads):
            break
    else:
        pytest.fail(f"the search did not end within {SEARCH_CAP_S} s")
    assert seen_live
    assert any("Finished" in h.value for h in at.subheader), _texts(at)
    traces = _chart_traces(at)
    assert any("trained" in names for names in traces), traces          # the tree
    assert at.get("graphviz_chart"), "the selected/best network is drawn"
    assert "Done!" in at.success[0].value

    # another view of the live charts
    at.segmented_control(key="view").set_value("How different they are")
    at.run()
    assert not at.exception, at.exception

    # reload: a fresh session with only the address finds the run again
    again = _app(run=run_id)
    again.switch_page(PAGES["search"])
    again.run()
    assert not again.exception and any("Finished" in h.value for h in again.subheader)

    at.switch_page(PAGES["results"])
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test accuracy"].endswith("%")
    assert re.fullmatch(r"\d{1,3}(\.\d)?( [kM])?", metrics["Size (weights)"]), metrics   # short units: it fits
    keys = {el.proto.id.split("-")[-1] for el in at.get("plotly_chart")}
    assert {"per_class", "confusion", "predictions"} <= keys, keys
    assert at.get("graphviz_chart")
    downloads = [d.proto.label for d in at.get("download_button")]
    assert downloads == ["Keras (.keras)", "SavedModel (.zip)", "TFLite (.tflite)", "Class names (.json)"], downloads
    snippet = at.code[0].value
    assert "keras.models.load_model" in snippet
    # the snippet runs as printed, next to the downloaded files
    run_dir = Path(__import__("engine.paths", fromlist=["x"]).runs_dir()) / run_id
    shutil.copy(run_dir / "best_model.keras", tmp_path / "sprout_model.keras")
    (tmp_path / "labels.json").write_text(json.dumps([str(d) for d in range(10)]))
    Image.fromarray(np.full((40, 30, 3), 90, np.uint8)).save(tmp_path / "my_picture.jpg")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "snippet", "exec"), {})
    label, confidence = printed.getvalue().split()[-2:]
    assert label in [str(d) for d in range(10)] and 0 < float(confidence) <= 1

    at.switch_page(PAGES["try_it"])
    at.run()
    assert not at.exception, at.exception
    caption = next(c.value for c in at.caption if c.value.startswith("From the search run"))
    assert "sample digits · bayesian · done · test " in caption and not re.search(r"·\s*·|·\s*\.", caption), caption
    at.segmented_control(key="try_source").set_value("Your data")
    at.run()
    at.button(key="random_test").click()
    at.run()
    assert not at.exception, at.exception
    verdict = [h.value for h in at.subheader]
    assert verdict and ("It's" in verdict[0] or "Maybe" in verdict[0]), verdict
    assert any("top" in k for k in _plotly_specs(at)), "the top predictions chart"

    # an uploaded picture goes through engine.data.ingest.decode_image
    at.segmented_control(key="try_source").set_value("Upload")
    at.run()
    at.file_uploader(key="picture_0").set_value([("seven.png", _png(30, 40, colour=True), "image/png")])
    at.run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader]


@pytest.mark.slow
def test_a_killed_search_shows_as_interrupted_and_resumes_from_the_page(monkeypatch):
    """The search's process is SIGKILLed: the page keeps working, shows the run as interrupted,
    says which network was lost and offers Resume, which goes on from the last finished network;
    Stop then keeps the best network so far, tested and saved, and the Results page shows it.
    (A worker with a stand-in trainer, tests/fake_worker.py: this is about processes, not training;
    the best network is still built, tested and saved by Keras. A real worker's stop within 2 s:
    tests/test_jobs.py.)"""
    import os
    import signal
    import sys

    from engine import paths
    from engine.search import jobs

    from views.warmup import start_warm_up

    monkeypatch.setattr(jobs, "WORKER", [sys.executable, "-m", "tests.fake_worker", "search"])
    monkeypatch.setenv("FAKE_EPOCH_S", "0.5")
    # the warm-up thread imports plotly (and pandas) while a first page may: done first, as in a
    # server that has been up a few seconds (two threads importing pandas at once can fail)
    assert start_warm_up().done.wait(120)
    at = _app(data="sample", size="8")
    at.switch_page(PAGES["search"])
    at.run()
    _start_search(at, budget_s=600, epochs=2)
    run_id = at.query_params["run"]
    trials = Path(paths.runs_dir()) / run_id / "trials.jsonl"

    def rerun_until(check, what: str) -> None:
        t0 = time.monotonic()
        while not check():
            assert time.monotonic() - t0 < SEARCH_CAP_S, f"waited in vain for {what}: {_texts(at)[-400:]}"
            time.sleep(0.3)
            at.run()
            assert not at.exception, at.exception

    def heads() -> str:
        return " ".join(h.value for h in at.subheader)

    def training_after_one() -> bool:
        """A network after the first in training, as the worker's last event says (no page lag)."""
        n = trials.read_text().count("\n") if trials.exists() else 0
        events = (trials.parent / ".events.jsonl").read_text().splitlines() if n else []
        last = json.loads(events[-1]) if events else {}
        return n >= 1 and last.get("type") in ("trial_started", "batch") and last.get("trial_id") == str(n)

    t0 = time.monotonic()
    while not training_after_one():
        assert time.monotonic() - t0 < SEARCH_CAP_S, "no second network trained"
        time.sleep(0.02)
    os.kill(json.loads((trials.parent / "state.json").read_text())["pid"], signal.SIGKILL)
    at.run()
    rerun_until(lambda: "Interrupted" in heads(), "the run to show as interrupted")
    kept = trials.read_text().count("\n")
    assert f"Network #{kept}, in training, was lost" in _texts(at) and "SIGKILL" in _texts(at)
    assert at.button(key="resume").label == "Resume"
    at.button(key="resume").click()
    at.run()
    assert not at.exception, at.exception
    rerun_until(lambda: "Searching" in heads() and trials.read_text().count("\n") > kept, "the lost network redone")
    rerun_until(lambda: int({m.label: m.value for m in at.metric}.get("Networks trained", "0")) > kept,
                "the page to count the redone network")
    at.button(key="stop").click()
    at.run()
    rerun_until(lambda: "Stopped" in heads(), "the run to stop")
    ids = [json.loads(line)["id"] for line in trials.read_text().splitlines()]
    assert ids == [str(i) for i in range(len(ids))] and len(ids) > kept, ids
    assert "Done!" in at.success[0].value     # the best network so far was tested and saved
    at.switch_page(PAGES["results"])
    at.run()
    assert not at.exception and {m.label: m.value for m in at.metric}["Test accuracy"].endswith("%")


def test_a_search_beyond_the_limit_waits_in_the_queue_and_can_be_cancelled(monkeypatch, tmp_path):
    """SPROUT_MAX_ACTIVE=1: a second search started from another tab waits, the page shows its
    place in the queue and a Cancel, which removes it. (tests/fake_worker.py's "hold" worker
    stands in for the search: this is about the queue, not training.)"""
    import sys

    from engine import paths
    from engine.search import jobs
    from views.warmup import start_warm_up

    monkeypatch.setattr(jobs, "WORKER", [sys.executable, "-m", "tests.fake_worker", "hold"])
    monkeypatch.setenv("SPROUT_MAX_ACTIVE", "1")
    assert start_warm_up().done.wait(120)  # see test_a_killed_search_shows_as_interrupted_and_resumes_from_the_page
    tabs = []
    for k in range(2):
        at = _app(data="sample", size="8")
        at.switch_page(PAGES["search"])
        at.run()
        if k:  # a second tab finds the running search first, and leaves it for a search of its own
            assert at.query_params["run"] == tabs[0].query_params["run"] and "start" not in [b.key for b in at.button]
            at.button(key="new_search").click()
            at.run()
        at.button(key="start").click()
        at.run()
        assert not at.exception, at.exception
        tabs.append(at)
    first, second = tabs
    first_id, second_id = first.query_params["run"], second.query_params["run"]
    assert first_id != second_id
    assert any("Waiting for a free place" in h.value for h in second.subheader), [h.value for h in second.subheader]
    assert "number **1** in the queue" in _texts(second)
    assert "start" not in [b.key for b in second.button], "no second Start while this tab's search waits"
    second.button(key="cancel").click()
    second.run()
    assert not second.exception, second.exception
    assert "run" not in second.query_params and "in the queue" not in _texts(second)
    assert not (Path(paths.runs_dir()) / second_id).exists()
    (Path(paths.runs_dir()) / first_id / "release").write_text("")  # the first search ends
    t0 = time.monotonic()
    while not any("Finished" in h.value for h in first.subheader):
        assert time.monotonic() - t0 < 30, [h.value for h in first.subheader]
        time.sleep(0.2)
        first.run()
    assert not first.exception, first.exception
