"""The app uses Streamlit's public API only: no ``streamlit.runtime`` internals, no
``script_runner``, no ``_``-prefixed name of a streamlit module. A private name can be renamed
in any release, and an assignment to it then silently does nothing (issue #15)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "app.py", *sorted((ROOT / "views").rglob("*.py")), *sorted((ROOT / "engine").rglob("*.py"))]
PRIVATE_MODULES = ("streamlit.runtime", "streamlit.web")


def _private(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "streamlit" and (module.startswith(PRIVATE_MODULES) or any(p.startswith("_") for p in parts))


def private_streamlit_uses(source: str) -> list[str]:
    """Each use of a private Streamlit name in ``source``, as ``"line N: what"``."""
    found, aliases = [], set()
    if "script_runner" in source:
        lines = [i for i, text in enumerate(source.splitlines(), 1) if "script_runner" in text]
        found += [f"line {i}: script_runner" for i in lines]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "streamlit":
                    aliases.add(alias.asname or "streamlit")
                    if _private(alias.name):
                        found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "streamlit":
            for alias in node.names:
                aliases.add(alias.asname or alias.name)
                if _private(node.module) or alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_private_names():
    sample = ("import streamlit as st\nfrom streamlit.runtime.scriptrunner import script_runner\n"
              "import streamlit.web.bootstrap\nfrom streamlit import _bottom\n"
              "script_runner._clean_problem_modules = None\nst._main.x = 1\nst.session_state.x = 1\n"
              "from engine.x import _ok\n_ok._fine = 1\n")
    assert private_streamlit_uses(sample) == [
        "line 2: script_runner", "line 5: script_runner",
        "line 2: from streamlit.runtime.scriptrunner import script_runner",
        "line 3: import streamlit.web.bootstrap", "line 4: from streamlit import _bottom",
        "line 5: script_runner._clean_problem_modules", "line 6: st._main",
    ]
    assert private_streamlit_uses("import streamlit as st\nst.button('x')\nst.session_state.a = 1\n") == []


def test_app_views_and_engine_use_no_private_streamlit_name():
    assert len(SOURCES) > 20, "the sources were found"
    found = {p.relative_to(ROOT).as_posix(): uses for p in SOURCES
             if (uses := private_streamlit_uses(p.read_text(encoding="utf-8")))}
    assert not found, f"expected no private Streamlit names; received {found}"


def test_streamlit_is_pinned_to_a_range_from_the_tested_version():
    """requirements.txt and pyproject.toml allow the same range; its lower bound is the version
    the suite runs on (the one installed here)."""
    import tomllib
    from importlib.metadata import version

    requirement = next(line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                       if line.startswith("streamlit"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert requirement in project
    # written as the wheel's metadata writes it (tests/test_packaging.py compares the two)
    assert requirement.startswith("streamlit<") and ",>=" in requirement, requirement
    low = requirement.split(">=")[1]
    assert low == version("streamlit"), f"expected the tested version {version('streamlit')} as the lower bound"
