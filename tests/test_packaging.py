"""``pip install .``: the wheel built from pyproject.toml holds the whole engine, the app and the
``sprout`` command, with the same pins as the requirements files the scripts install."""

from __future__ import annotations

import configparser
import contextlib
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import engine
from engine.cli import app_command, main

ROOT = Path(__file__).resolve().parent.parent
#: What the wheel is built from; the rest of the checkout (tests, bench, .venv) stays out of the copy.
SOURCES = ["pyproject.toml", "README.md", "engine", "app.py", "views", "assets", ".streamlit"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel pip builds from a copy of the checkout (setuptools writes build/ and *.egg-info
    beside the sources; the copy keeps them out of the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "-w", str(out), str(src)],
                   check=True, timeout=300)
    (path,) = out.glob("sprout-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _dist_info(wheel: zipfile.ZipFile, name: str) -> str:
    (member,) = [m for m in wheel.namelist() if m.endswith(f".dist-info/{name}")]
    return wheel.read(member).decode("utf-8")


def _pins(requirements: Path) -> set[str]:
    """The requirement lines of a requirements file, without comments and ``-r`` includes."""
    lines = (line.split("#")[0].strip() for line in requirements.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("-")}


def test_wheel_has_the_sprout_command(wheel):
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_dist_info(wheel, "entry_points.txt"))
    assert entry_points["console_scripts"]["sprout"] == "engine.cli:main"


def test_wheel_has_every_engine_module(wheel):
    shipped = set(wheel.namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "engine").rglob("*.py") if "__pycache__" not in p.parts}
    packages = {Path(m).parent.as_posix() for m in modules}
    assert {"engine/data", "engine/nas", "engine/training", "engine/search", "engine/figures"} <= packages
    assert modules - shipped == set()


def test_wheel_has_the_app_and_nothing_else_of_the_checkout(wheel):
    shipped = set(wheel.namelist())
    app = {"sprout_app/app.py", "sprout_app/.streamlit/config.toml", "sprout_app/assets/style.css",
           "sprout_app/assets/logo.svg", "sprout_app/assets/logo_icon.svg"}
    app |= {f"sprout_app/views/{p.name}" for p in (ROOT / "views").glob("*.py")}
    app |= {f"sprout_app/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / "assets" / "demo-run").rglob("*")
            if p.is_file()}  # the recorded demo the Replay page opens
    assert app - shipped == set()
    tops = {name.split("/")[0] for name in shipped}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"engine", "sprout_app"}
    assert not any(name.startswith("sprout_app/") and name.count("/") == 1 and name != "sprout_app/app.py"
                   for name in shipped), "only app.py should ship from the checkout's root"


def test_wheel_pins_match_the_requirements_files(wheel):
    metadata = _dist_info(wheel, "METADATA").splitlines()
    assert f"Version: {engine.__version__}" in metadata
    assert "Requires-Python: >=3.11" in metadata
    requires = [line.removeprefix("Requires-Dist: ") for line in metadata if line.startswith("Requires-Dist: ")]
    base = {r for r in requires if ";" not in r}
    test = {r.split(";")[0].strip() for r in requires if r.endswith('extra == "test"')}
    assert base == _pins(ROOT / "requirements.txt")
    assert test == _pins(ROOT / "requirements-dev.txt")
    assert {r.split("extra == ")[1] for r in requires if "extra == " in r} == {'"test"', '"ray"'}
    assert {r.split(";")[0].strip() for r in requires if r.endswith('extra == "ray"')} == \
        {p for p in test if p.startswith("ray==")}, "the ray extra: Ray alone, pinned as for the tests"


def test_installed_layout_finds_its_app(wheel, tmp_path):
    """Unpacked like site-packages, ``sprout app`` runs the shipped app.py, and app.py's
    ``views`` imports resolve beside it (streamlit puts the script's folder on sys.path)."""
    site = tmp_path / "site-packages"
    wheel.extractall(site)
    probe = ("import importlib.util, sys; from engine.cli import app_command; cmd = app_command(8502); "
             "sys.path.insert(0, str(__import__('pathlib').Path(cmd[4]).parent)); "
             "print(cmd[4]); print(importlib.util.find_spec('views.common').origin)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                         capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    assert out == [str(site / "sprout_app" / "app.py"), str(site / "sprout_app" / "views" / "common.py")]


def test_app_command_in_a_checkout_runs_its_app_py_on_localhost():
    cmd = app_command(8502)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py")]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8502"
    assert (ROOT / ".streamlit" / "config.toml").is_file()  # read as app.py's own config


@pytest.mark.parametrize("args", [["--help"], ["search", "--help"], ["app", "--help"]])
def test_python_m_engine_and_the_entry_point_agree(args, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal: the same width for both
    module = subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit_:
        main(args)
    assert (module.returncode, module.stdout) == (exit_.value.code, stdout.getvalue())
    assert "usage:" in module.stdout
