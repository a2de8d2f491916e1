"""The app in a real headless Chromium: drop a folder, search, reload, download, try it; a server
killed during a search, started again, and the search resumed from the page.

Starts ``streamlit run app.py`` on a free port with SPROUT_HOME in a temporary folder and
drives it with Playwright. Screenshots of every page go to tests/artifacts/ (gitignored).
Skips when Debian's chromium is not installed at /usr/bin/chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
FASHION = ROOT.parent / "shared" / "datasets" / "fashion-mnist-small" / "train"
SEARCH_BUDGET_S = 120  # stopped once the tree has two networks: a long budget costs no time, and
# leaves room for a second network on a slow machine (at 40 s, CI trained only the seed)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
SERVER_UP_S = 10  # the server has been up this long before the first page is timed...
# ...and from the page's load event (Chromium has loaded Streamlit's page and scripts) the
# Search page shows its Start button within START_AFTER_LOAD_S (issue #20): the app's part.
# From page.goto the browser's own part comes on top: 1.8-2.6 s for Chromium to fetch, parse
# and draw Streamlit's bundle on these 2 shared cores, 2.5-4.6 s on a first visit while
# TensorFlow's background import competed for the cores; START_WITHIN_S bounds that loosely.
# That Start never waits for the import is tests/test_app.py's (deterministic) check.
START_AFTER_LOAD_S = 2.0  # issue #20 asks 1 s. On an idle 2-core machine a server's first visit shows Start
# 0.89 s after the load event (median of 3 servers; 0.52 s on later visits), Streamlit's own one-button page 0.92 s
# (bench/results/app_latency.md, "Start after page load"); 2 s leaves room for a slower CI machine and still
# catches a page that waits for the inputs' code (1.7-1.9 s before) or for TensorFlow (3-5 s). That Start is
# drawn without waiting for the inputs' code is tests/test_app.py's (deterministic) check.
START_WITHIN_S = 6.0
# Milliseconds from the navigation's load event to now, in the page's own clock.
JS_SINCE_LOAD_MS = "() => performance.now() - performance.getEntriesByType('navigation')[0].loadEventEnd"
# A run label with an empty field: "a · · b", "a ·  · b", or a trailing "·".
EMPTY_FIELD = re.compile(r"·\s*·|·\s*$")
EARLIER_RUN = "20261202-055946-3276b2"  # a run of an earlier server that left only its state.json

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM} "
                       "(apt-get install -y chromium)"),
    pytest.mark.timeout(900),
]

# Points of the search tree, read from the plotly figures in the page.
JS_TREE_NODES = """() => { const ids = [];
  for (const d of document.querySelectorAll('.js-plotly-plot'))
    for (const t of (d.data || [])) if (t.name === 'trained' || t.name === 'failed')
      for (const c of (t.customdata || [])) ids.push(c[0]);
  return ids; }"""
# Screen position of one trained node, to click it.
JS_NODE_XY = """(want) => {
  for (const d of document.querySelectorAll('.js-plotly-plot')) {
    const t = (d.data || []).find(t => t.name === 'trained'); if (!t) continue;
    const i = t.customdata.findIndex(c => c[0] === want); if (i < 0) continue;
    const fl = d._fullLayout, r = d.getBoundingClientRect();
    return [r.left + fl._size.l + fl.xaxis.l2p(t.x[i]), r.top + fl._size.t + fl.yaxis.l2p(t.y[i])]; }
  return null; }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image_tree(dest: Path) -> Path:
    """Four classes of 30 small greyscale images: Fashion-MNIST when the shared copy is there."""
    classes = ["trouser", "bag", "sneaker", "dress"]
    for k, cls in enumerate(classes):
        (dest / cls).mkdir(parents=True)
        real = sorted((FASHION / cls).glob("*.png"))[:30] if FASHION.is_dir() else []
        if real:
            for f in real:
                shutil.copy(f, dest / cls / f.name)
            continue
        rng = np.random.default_rng(k)
        for i in range(30):
            img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            img[4 + 5 * k: 10 + 5 * k, :] = 255
            Image.fromarray(img).save(dest / cls / f"{i:03d}.png")
    return dest


@contextmanager
def _serve(home: Path):
    """``streamlit run app.py``, headless, on a free port with SPROUT_HOME=home, once its
    /_stcore/health answers: yields (its process, its address, time.monotonic() at its start)
    and ends it afterwards (unless the test killed it). Its output goes to home/server.log."""
    port = _free_port()
    env = {**os.environ, "SPROUT_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(home / "server.log", "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={port}",
             "--server.address=127.0.0.1", "--browser.gatherUsageStats=false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            started = time.monotonic()
            deadline = started + 60
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start: {(home / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
            yield proc, url, started
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("sprout_home")
    with _serve(home) as (proc, url, started):
        yield url, home, started, proc  # the last test of this module kills it


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(800)  # let charts finish drawing
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _tree_nodes(page) -> list[str]:
    return page.evaluate(JS_TREE_NODES)


def _no_failure(page) -> None:
    """The search did not fail (its plain-words error is in the message)."""
    assert page.get_by_text("Something went wrong").count() == 0, (
        page.locator("[data-testid=stAlert]").all_inner_texts())


def _no_exception(page) -> None:
    assert page.locator("[data-testid=stException]").count() == 0, (
        page.locator("[data-testid=stException]").inner_text())


def _run_labels(page, picker: str) -> list[str]:
    """The options of a run selector (opened, read, closed)."""
    page.get_by_role("combobox", name=picker).click()
    options = page.get_by_role("option")
    options.first.wait_for()
    labels = options.all_inner_texts()
    page.keyboard.press("Escape")
    return labels


def _no_empty_label_field(texts: list[str]) -> None:
    for text in texts:
        for line in text.splitlines():
            assert not EMPTY_FIELD.search(line), f"a run label with an empty field: {line!r}"


def _earlier_run(home: Path) -> None:
    """A run folder holding only state.json, as an interrupted earlier server leaves it."""
    folder = home / "runs" / EARLIER_RUN
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(
        '{"format": 1, "config": {"searcher": "random", "budget_s": 60}, "created": "2026-12-02T05:59:46Z", '
        '"data_source": "sample", "phase": "search"}')


def test_drop_search_reload_download_try(server, browser, tmp_path):
    url, home, started, _ = server
    folder = _image_tree(tmp_path / "clothes")
    _earlier_run(home)
    page = browser.new_page(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
    page.set_default_timeout(60_000)

    # 0. The first visit, to the Search page: its Start button does not wait for TensorFlow
    time.sleep(max(0.0, started + SERVER_UP_S - time.monotonic()))
    t0 = time.monotonic()
    page.goto(f"{url}/search?data=sample")
    page.get_by_role("button", name="Start the search").wait_for()
    after_load = page.evaluate(JS_SINCE_LOAD_MS) / 1000
    to_start = time.monotonic() - t0
    checking = page.get_by_text("Runs on: checking this computer…").count()
    print(f"Start visible {after_load:.2f} s after the page's load event, {to_start:.2f} s after goto "
          f"(device line still checking: {bool(checking)})")
    assert after_load < START_AFTER_LOAD_S, f"Start appeared {after_load:.2f} s after the page loaded"
    assert to_start < START_WITHIN_S, f"Start appeared {to_start:.2f} s after goto"
    page.get_by_text(re.compile(r"Runs on: (GPU|CPU) ")).wait_for(timeout=30_000)  # filled in by the warm-up
    _no_exception(page)
    _shot(page, "00_search_first_visit")

    # 1. Data: drop the folder
    page.goto(url)
    page.get_by_text("Drop a folder of images or try the sample to start").wait_for()
    _shot(page, "01_data_empty")
    page.locator("input[type=file][webkitdirectory]").set_input_files(folder)
    page.get_by_text("What Sprout found").wait_for(timeout=120_000)
    assert page.get_by_test_id("stMetricValue").first.inner_text() == "120"
    page.get_by_role("slider").first.focus()
    page.keyboard.press("Home")                               # the smallest image size: a faster search
    page.get_by_text("as the network will see them (16×16)").wait_for()
    _no_exception(page)
    _shot(page, "02_data_report")

    # 2. Search: a short run
    page.get_by_role("button", name="Next: find a network").click()
    page.get_by_role("button", name="Start the search").wait_for()
    page.get_by_text("Advanced settings").click()
    page.get_by_role("spinbutton", name="Most epochs per network").fill("2")
    budget = page.get_by_role("spinbutton", name="…or a budget in seconds")
    budget.fill(str(SEARCH_BUDGET_S))
    budget.press("Tab")
    page.wait_for_timeout(500)
    _shot(page, "03_search_form")
    page.get_by_role("button", name="Start the search").click()
    page.wait_for_url("**run=*")
    run_id = page.url.split("run=")[1].split("&")[0]

    t0 = time.monotonic()
    while len(_tree_nodes(page)) < 2:
        assert time.monotonic() - t0 < SEARCH_BUDGET_S + 60, f"only {_tree_nodes(page)} in the tree"
        _no_failure(page)
        page.wait_for_timeout(1000)
    _no_exception(page)
    _shot(page, "04_search_live")

    # 3. Reload: the address alone finds the run again
    page.reload()
    page.get_by_text("The tree of networks", exact=True).wait_for()
    assert f"run={run_id}" in page.url
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0")
    page.wait_for_timeout(1500)
    assert len(_tree_nodes(page)) >= 2

    # 3b. Kill the search's process (issue #15): the server still answers, the run shows as
    # interrupted with Resume, and Resume goes on from the last finished network
    trials = home / "runs" / run_id / "trials.jsonl"
    kept = [line for line in trials.read_text().splitlines() if line.strip()]
    os.kill(json.loads((home / "runs" / run_id / "state.json").read_text())["pid"], signal.SIGKILL)
    assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).read() == b"ok"
    page.get_by_role("button", name="Resume").wait_for(timeout=30_000)
    assert page.get_by_text("Interrupted").count() and page.get_by_text("SIGKILL").count()
    assert urllib.request.urlopen(f"{url}/_stcore/health", timeout=5).read() == b"ok"
    _shot(page, "04b_search_interrupted")
    page.get_by_role("button", name="Resume").click()
    page.get_by_role("button", name="Stop").wait_for(timeout=60_000)
    t0 = time.monotonic()
    while len([line for line in trials.read_text().splitlines() if line.strip()]) <= len(kept):
        assert time.monotonic() - t0 < SEARCH_BUDGET_S, "the resumed search trained no network"
        _no_failure(page)
        page.wait_for_timeout(500)
    ids = [json.loads(line)["id"] for line in trials.read_text().splitlines() if line.strip()]
    assert ids == [str(i) for i in range(len(ids))] and ids[:len(kept)] == [json.loads(k)["id"] for k in kept]

    # 4. Stop it: two networks are enough for the rest of the path, and Stop keeps the best
    # one as the run's model (the budget's end is tests/test_search.py's to check).
    t0 = time.monotonic()
    stopped = False
    while page.get_by_role("button", name="See the results").count() == 0:
        if not stopped and page.get_by_role("button", name="Stop").count():
            page.get_by_role("button", name="Stop").click()
            stopped = True
        assert time.monotonic() - t0 < SEARCH_BUDGET_S + 120, "the search did not end"
        _no_failure(page)
        page.wait_for_timeout(1000)
    ids = _tree_nodes(page)
    assert len(ids) >= 2
    _shot(page, "05_search_done")
    # every run's label is complete: this run's, and the earlier one that left only state.json
    labels = _run_labels(page, "Search run")
    assert len(labels) == 2 and any("sample digits · random · interrupted" in label for label in labels), labels
    upload = re.compile(r"\w+, \w+, \w+ \+1 more · bayesian · stopped · test \d+%$")
    assert any(upload.search(label) for label in labels), labels
    _no_empty_label_field(labels + page.get_by_test_id("stCaptionContainer").all_inner_texts())

    # clicking a node in the tree shows that network
    xy = page.evaluate(JS_NODE_XY, ids[0])
    assert xy, "a trained node to click"
    page.mouse.click(*xy)
    page.get_by_role("heading", name=f"Network #{ids[0]}").wait_for(timeout=20_000)
    page.get_by_text("How different they are").click()
    page.get_by_text("A map of the networks").wait_for()
    page.wait_for_timeout(1000)
    _no_exception(page)
    _shot(page, "06_search_distances")

    # 5. Results: charts and the .keras download
    page.get_by_role("button", name="See the results").click()
    page.get_by_text("Take it with you").wait_for()
    page.get_by_text("What gets mixed up").wait_for()
    _no_exception(page)
    _shot(page, "07_results")
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("button", name="Keras (.keras)").click()
    model_file = tmp_path / "sprout_model.keras"
    info.value.save_as(model_file)
    import keras

    model = keras.models.load_model(model_file, safe_mode=True)
    probs = model.predict(np.zeros((1, 16, 16, 1), np.uint8), verbose=0)
    assert probs.shape == (1, 4) and abs(float(probs.sum()) - 1) < 1e-4

    # 6. Try it: one picture
    page.get_by_role("link", name="Try it").click()
    page.get_by_text("Show your network a new picture").wait_for()
    picture = next(folder.glob("bag/*.png"))
    page.locator("input[type=file]").first.set_input_files(picture)
    page.locator("h3", has_text=re.compile(r"It's|Maybe")).first.wait_for(timeout=90_000)
    _no_exception(page)
    _shot(page, "08_try_it")
    _no_empty_label_field(_run_labels(page, "Network from search run")
                          + page.get_by_test_id("stCaptionContainer").all_inner_texts())

    # 7. How it works
    page.get_by_role("link", name="How it works").click()
    page.get_by_text("Grow, don't restart").wait_for()
    _shot(page, "09_how_it_works")
    page.close()


DEMO_OPENS_S = 3.0  # issue #18: the recorded demo opens in under 3 s (its page, demo chosen, on screen)...
DEMO_DRAWN_S = 30.0  # ...and its tree is drawn: 2.7 s with the whole page in the viewport, 7.7-14.4 s with a
# shorter one, on 2 cores at load 13-15 while the server was still importing TensorFlow (the page's script
# ended 1.0-2.0 s after the click); a loose bound until it is measured on an idle machine


def test_replay_of_the_recorded_demo(server, browser):
    """One click from the first page opens the recorded demo (tree drawn within DEMO_OPENS_S);
    the timeline changes how many networks the tree shows; the model's predictions and the
    distance view are drawn."""
    url, _, _, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 3300})  # the whole page: one screenshot each
    page.set_default_timeout(60_000)
    # timed once the browser has Plotly's code and the server the page's modules, as a class meets it
    # a second time (a cold server and browser took 21 s on a machine at load 15, mostly the browser's
    # first plotly chart and the server's TensorFlow import holding the cores)
    page.goto(f"{url}/replay")
    page.wait_for_function(JS_TREE_NODES.replace("return ids; }", "return ids.length > 0; }"))
    page.goto(url)
    page.get_by_role("button", name="Watch a recorded search").wait_for()
    page.wait_for_timeout(1000)
    t0 = time.monotonic()
    page.get_by_role("button", name="Watch a recorded search").click()
    page.get_by_role("heading", name="Replay a search").wait_for()
    titled = time.monotonic() - t0
    page.get_by_text("How far apart are two networks?").wait_for()  # sent after the tree: the script is done
    scripted = time.monotonic() - t0
    page.wait_for_function(JS_TREE_NODES.replace("return ids; }", "return ids.length > 0; }"))
    opened = time.monotonic() - t0
    print(f"the demo's tree was drawn {opened:.2f} s after the click (the page's title after {titled:.2f} s, "
          f"the end of its script after {scripted:.2f} s)")
    assert titled < DEMO_OPENS_S, f"the demo's page took {titled:.2f} s to open"
    assert opened < DEMO_DRAWN_S, f"the demo's tree took {opened:.2f} s to draw"
    page.get_by_text("How far apart are two networks?").wait_for()
    page.wait_for_timeout(1500)
    full = _tree_nodes(page)
    _no_exception(page)
    _shot(page, "10_replay_demo_end")

    slider = page.get_by_role("slider").first
    slider.focus()
    page.keyboard.press("Home")  # the start: nothing trained yet
    page.wait_for_function(JS_TREE_NODES.replace("return ids; }", "return ids.length === 0; }"))
    counts = []
    for _ in range(6):  # moment by moment: a network starts, then finishes
        page.get_by_role("button", name="Next").click()
        page.wait_for_timeout(1200)
        counts.append(len(_tree_nodes(page)))
    print(f"networks in the tree, moment by moment: {counts} (all: {len(full)})")
    assert counts == sorted(counts) and 0 < counts[-1] <= len(full), counts
    _no_exception(page)
    _shot(page, "11_replay_midway")
    page.get_by_text("Curves per network").click()
    page.wait_for_timeout(1200)
    _shot(page, "12_replay_curves")
    page.get_by_text("The model learns").click()
    page.wait_for_timeout(1200)
    _no_exception(page)
    _shot(page, "13_replay_model_and_distance")


def _records(trials: Path) -> list[dict]:
    """The trial records written in full (a line being appended has no newline yet)."""
    lines = trials.read_text().split("\n")[:-1] if trials.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (an ended process not yet reaped by init does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _wait_in(page, check, timeout_s: float, what: str) -> None:
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout_s, f"waited {timeout_s:g} s in vain for {what}"
        _no_failure(page)
        page.wait_for_timeout(300)


def test_a_killed_server_restarts_and_its_search_resumes(server, browser):
    """Issue #15: the server is SIGKILLed while a search started from the app trains. The search's
    process leaves by itself (it watches its parent); a new server on the same SPROUT_HOME, at the
    address the tab had, lists the run as interrupted and shows it with Resume, and Resume goes on
    from the last finished network: the ids go on and the kept networks are not trained again.
    The last test of this module: it kills the module's server (one server start less)."""
    url, home, _, proc = server
    if not (home / "runs" / EARLIER_RUN).exists():  # run alone: a second run, so the page lists runs
        _earlier_run(home)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(120_000)  # a fresh server on busy cores (CI runs other tests beside it)
    page.goto(f"{url}/search?data=sample&size=8")  # the digits at 8x8, one epoch a network
    page.get_by_text("Advanced settings").click()
    page.get_by_role("spinbutton", name="Most epochs per network").fill("1")
    budget = page.get_by_role("spinbutton", name="…or a budget in seconds")
    budget.fill("600")  # Stop ends it, not the budget
    budget.press("Tab")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Start the search").click()
    page.wait_for_url("**run=*")
    address = urllib.parse.urlsplit(page.url)
    run_id = urllib.parse.parse_qs(address.query)["run"][0]
    trials = home / "runs" / run_id / "trials.jsonl"
    _wait_in(page, lambda: len(_records(trials)) >= 1, 180, "a first network")
    worker = json.loads((trials.parent / "state.json").read_text())["pid"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    t0 = time.monotonic()
    while _running(worker):
        assert time.monotonic() - t0 < 10, "the search's process outlived its server by 10 s"
        time.sleep(0.1)
    kept_lines = trials.read_text().split("\n")[:len(_records(trials))]
    kept = _records(trials)

    with _serve(home) as (_, url, _):
        page.goto(f"{url}{address.path}?{address.query}")  # the tab's address, on the new server
        page.get_by_role("button", name="Resume").wait_for()
        assert page.get_by_role("heading", name=re.compile("Interrupted")).count()
        assert page.get_by_text("The search was interrupted before it finished").count()
        assert any("sample digits · bayesian · interrupted" in label for label in _run_labels(page, "Search run"))
        _no_exception(page)
        page.get_by_role("button", name="Resume").click()
        page.get_by_role("button", name="Stop").wait_for()
        # the network lost with the server, trained again: its id follows the kept ones
        _wait_in(page, lambda: len(_records(trials)) > len(kept), 180, "one more network")
        page.get_by_role("button", name="Stop").click()
        page.get_by_role("heading", name=re.compile("Stopped")).wait_for()
        _no_exception(page)
    records = _records(trials)
    ids = [r["id"] for r in records]
    assert ids == [str(i) for i in range(len(ids))] and len(ids) > len(kept) >= 1, ids
    assert trials.read_text().split("\n")[:len(kept)] == kept_lines, "the kept networks' records were rewritten"
    assert [r["finished_s"] for r in records[:len(kept)]] == [r["finished_s"] for r in kept]
    assert all(r["finished_s"] is not None for r in records)
    page.close()
