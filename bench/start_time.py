"""How soon a page's Start button is visible after the page's load event, in real Chromium (issue #20).

Starts ``streamlit run APP`` (SPROUT_HOME in a temporary folder) several times; on each server,
once it has been up ``--up`` seconds, opens the page in fresh browser contexts (an empty
HTTP cache, a new Streamlit session each) and reads a timeline recorded in the page itself:

- ``load``: the navigation's load event (Streamlit's HTML and scripts are in);
- ``ws_open``: the websocket to the server is open; ``rerun_sent``: the first message sent on it
  (the frontend asking for the script to run);
- ``first_msg`` / ``first_el``: the first server message / the first element in the page;
- ``start``: a button whose text holds ``--button`` is in the page and laid out (a
  MutationObserver: the DOM, before paint) and ``start_pw`` the same as the browser test reads
  it (Playwright's wait_for, then ``performance.now()``);
- ``last_msg``: the last server message within a second after Start (the script's end).

Visit 1 of a server is its first visit (what tests/test_browser.py times); later visits
find Streamlit's caches warm. A floor: ``--app`` a script holding only ``st.button("Start")``.

    python bench/start_time.py --servers 5 --visits 3
    python bench/start_time.py --app /tmp/floor/app.py --path "" --button Start
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
MARKS = ("load", "ws_open", "rerun_sent", "first_msg", "first_el", "start", "start_pw", "last_msg")

# Records the timeline in the page's own clock (ms since the navigation started).
INIT_JS = r"""(() => {
  const marks = window.__marks = {n_msg: 0};
  const now = () => performance.now();
  const Native = window.WebSocket;
  class Timed extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('open', () => { marks.ws_open ??= now(); });
      this.addEventListener('message', () => { marks.first_msg ??= now(); marks.last_msg = now(); marks.n_msg++; });
    }
    send(data) { marks.rerun_sent ??= now(); return super.send(data); }
  }
  window.WebSocket = Timed;
  new MutationObserver(() => {
    if (marks.first_el === undefined && document.querySelector('[data-testid="stElementContainer"]'))
      marks.first_el = now();
    if (marks.start === undefined)
      for (const b of document.querySelectorAll('button'))
        if (b.innerText.includes(BUTTON) && b.getBoundingClientRect().height > 0) { marks.start = now(); break; }
  }).observe(document, {childList: true, subtree: true, characterData: true});
})();"""
JS_READ = """() => ({...window.__marks, start_pw: performance.now(),
  load: performance.getEntriesByType('navigation')[0].loadEventEnd})"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app: Path, home: Path) -> tuple[subprocess.Popen, str, float]:
    """``streamlit run app`` on a free port; returns (process, url, monotonic time it answered health)."""
    port = _free_port()
    env = {**os.environ, "SPROUT_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless=true", f"--server.port={port}",
         "--server.address=127.0.0.1", "--browser.gatherUsageStats=false"],
        cwd=app.parent, env=env, stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT)
    url, started, deadline = f"http://127.0.0.1:{port}", time.monotonic(), time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return proc, url, started
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"streamlit did not start: {(home / 'server.log').read_text()[-2000:]}")


def visit(browser, url: str, button: str) -> dict:
    """One visit in a fresh context: the timeline marks (ms since navigation start)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    context.add_init_script(INIT_JS.replace("BUTTON", repr(button)))
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.get_by_role("button", name=button).first.wait_for()
    marks = page.evaluate(JS_READ)
    page.wait_for_timeout(1000)  # the rest of the script's messages
    marks["last_msg"] = page.evaluate("() => window.__marks.last_msg")
    context.close()
    return marks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--app", type=Path, default=ROOT / "app.py")
    ap.add_argument("--path", default="search?data=sample", help="the page's address after the server's root")
    ap.add_argument("--button", default="Start the search")
    ap.add_argument("--servers", type=int, default=5)
    ap.add_argument("--visits", type=int, default=3, help="visits per server; the first is the first visit")
    ap.add_argument("--up", type=float, default=10.0, help="seconds the server is up before the first visit")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    rows: list[tuple[int, int, dict]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for s in range(args.servers):
            with tempfile.TemporaryDirectory() as home:
                proc, url, started = serve(args.app.resolve(), Path(home))
                try:
                    time.sleep(max(0.0, started + args.up - time.monotonic()))
                    for v in range(args.visits):
                        marks = visit(browser, f"{url}/{args.path}", args.button)
                        rows.append((s, v, marks))
                        print(f"server {s} visit {v}: " + "  ".join(
                            f"{k} {marks.get(k, float('nan')):.0f}" for k in MARKS)
                            + f"  msgs {marks.get('n_msg')}", flush=True)
                finally:
                    proc.terminate()
                    proc.wait(15)
        browser.close()
    for label, pick in (("first visits", lambda v: v == 0), ("later visits", lambda v: v > 0)):
        chosen = [m for _, v, m in rows if pick(v)]
        if not chosen:
            continue
        print(f"\n{label} (n={len(chosen)}), medians in ms from the load event:")
        for k in MARKS[1:]:
            values = [m[k] - m["load"] for m in chosen if m.get(k) is not None]
            if values:
                print(f"  {k:<10} {statistics.median(values):7.0f}   (min {min(values):.0f}, max {max(values):.0f})")
        print(f"  {'load':<10} {statistics.median(m['load'] for m in chosen):7.0f}   (from navigation start)")


if __name__ == "__main__":
    main()
