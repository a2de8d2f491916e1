"""The shape of the code, read with ``ast`` (nothing is imported): engine's imports run one
way, no module only re-exports, TensorFlow stays under engine/training, modules stay short,
and the test suite neither expects failures nor hides deprecations."""

from __future__ import annotations

import ast
import configparser
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
TESTS = ROOT / "tests"
MAX_LINES = 400
TENSORFLOW = {"tensorflow", "keras", "tf_keras"}


@dataclass(frozen=True)
class Module:
    name: str       # dotted: engine.search.loop; a package is named by its folder
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package that relative imports in this module start from."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


@cache
def engine_modules() -> dict[str, Module]:
    """Every module under engine/, by dotted name."""
    out = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = Module(".".join(parts), path, ast.parse(path.read_text(), str(path)))
    return out


def imported_names(module: Module, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement loads: ``from a.b import c`` loads ``a.b.c`` when
    that is a module of engine, else ``a.b``; relative imports are resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.package.split(".")
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    known = engine_modules()
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def imports(module: Module, module_level_only: bool = False) -> list[tuple[str, int]]:
    """(dotted name, line) of every import in ``module``: module level, in classes and in
    functions, under ``if TYPE_CHECKING`` too (a dependency all the same); with
    ``module_level_only``, those that run when the module is imported (not inside
    functions, not under ``if TYPE_CHECKING``)."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if module_level_only and isinstance(child, ast.If) and _type_checking(child.test):
                for branch in child.orelse:
                    visit(ast.Module(body=[branch], type_ignores=[]))
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((name, child.lineno) for name in imported_names(module, child))
            visit(child)

    visit(module.tree)
    return found


def _type_checking(test: ast.expr) -> bool:
    """True for ``TYPE_CHECKING`` and ``typing.TYPE_CHECKING``."""
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" \
        or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def engine_target(name: str) -> str | None:
    """The engine module an imported dotted name refers to (itself or its nearest parent)."""
    known = engine_modules()
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(module_level_only: bool = False) -> dict[str, set[str]]:
    """Engine module -> the engine modules it imports (packages' own __init__ not counted as
    an edge from their submodules, which Python runs first anyway)."""
    graph: dict[str, set[str]] = {}
    for name, module in engine_modules().items():
        targets = {engine_target(n) for n, _ in imports(module, module_level_only)}
        graph[name] = {t for t in targets if t is not None and t != name and t != "engine"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path a -> ... -> a) for every strongly connected group of
    modules (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(closed_path(graph, group) for group in groups)


def closed_path(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``group`` that stays inside ``group``."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"expected a cycle through {start}, found none")


# --------------------------------------------------------------------------- helpers' own checks
def test_cycles_are_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_submodule_imports_resolve():
    any_module = engine_modules()["engine.search.loop"]
    tree = ast.parse("from engine.search import folder\nfrom . import budget\nfrom ..nas.gp import x\n"
                     "import engine.errors\ndef f():\n    import keras\n"
                     "if TYPE_CHECKING:\n    import tensorflow\nelse:\n    import numpy\n")
    module = Module(any_module.name, any_module.path, tree)
    assert [n for n, _ in imports(module)] == ["engine.search.folder", "engine.search.budget", "engine.nas.gp",
                                                "engine.errors", "keras", "tensorflow", "numpy"]
    assert [n for n, _ in imports(module, module_level_only=True)] == [
        "engine.search.folder", "engine.search.budget", "engine.nas.gp", "engine.errors", "numpy"]


# ------------------------------------------------------------------------------- the layout
def test_engine_imports_have_no_cycles():
    graph = import_graph()
    assert len(graph) > 20 and any(graph.values()), "the walk found engine's modules and their imports"
    found = cycles(graph)
    assert not found, "expected engine's imports to run one way; cycles: " + "; ".join(" -> ".join(c) for c in found)


def _only_reexports(tree: ast.Module) -> bool:
    """True when the module's statements, past its docstring, are imports and name aliases only."""
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    imports_ = [s for s in body if isinstance(s, (ast.Import, ast.ImportFrom)) and
                not (isinstance(s, ast.ImportFrom) and s.module == "__future__")]

    def aliasing(s: ast.stmt) -> bool:
        return isinstance(s, ast.Assign) and (
            all(isinstance(t, ast.Name) and t.id == "__all__" for t in s.targets)
            or isinstance(s.value, (ast.Name, ast.Attribute)))

    return bool(imports_) and all(isinstance(s, (ast.Import, ast.ImportFrom)) or aliasing(s) for s in body)


def test_no_module_only_re_exports():
    assert _only_reexports(ast.parse('"""doc"""\nfrom a import b, c\n__all__ = ["b", "c"]\nd = b\n'))
    assert not _only_reexports(ast.parse('"""doc"""\n'))
    assert not _only_reexports(ast.parse("from a import b\ndef f():\n    return b\n"))
    offenders = [m.path.relative_to(ROOT).as_posix() for m in engine_modules().values() if _only_reexports(m.tree)]
    assert not offenders, f"expected modules that hold code (or a package docstring); only imports in {offenders}"


def test_tensorflow_is_imported_only_under_training():
    """Outside engine/training, no module imports TensorFlow or Keras when it is imported,
    directly or through the engine modules it imports at module level."""
    modules = engine_modules()
    graph = import_graph(module_level_only=True)
    direct = {name: [(n, line) for n, line in imports(m, module_level_only=True) if n.split(".")[0] in TENSORFLOW]
              for name, m in modules.items()}

    def path_to_tensorflow(start: str) -> list[str] | None:
        seen, frontier = {start: [start]}, [start]
        while frontier:
            nxt = []
            for v in frontier:
                if direct[v]:
                    name, line = direct[v][0]
                    return seen[v] + [f"{name} (line {line})"]
                for w in sorted(graph[v] - seen.keys()):
                    seen[w] = seen[v] + [w]
                    nxt.append(w)
            frontier = nxt
        return None

    outside = [n for n in modules if not (n == "engine.training" or n.startswith("engine.training."))]
    found = {n: p for n in outside if (p := path_to_tensorflow(n))}
    assert not found, "expected TensorFlow only under engine/training at import time; received " + "; ".join(
        " -> ".join(p) for p in found.values())


def test_engine_modules_stay_short():
    long = {m.path.relative_to(ROOT).as_posix(): n for m in engine_modules().values()
            if (n := len(m.path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"expected at most {MAX_LINES} lines per engine module; received {long}"


# ------------------------------------------------------------------------------- the suite
def _xfail_uses(path: Path) -> list[int]:
    """Lines of ``path`` that use pytest's xfail (pytest.xfail, pytest.mark.xfail, an import)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "xfail" \
                or isinstance(node, ast.Name) and node.id == "xfail" \
                or isinstance(node, ast.alias) and node.name == "xfail":
            lines.append(node.lineno)
    return sorted(set(lines))


def test_no_test_expects_to_fail(tmp_path):
    sample = tmp_path / "t.py"
    sample.write_text("import pytest\nfrom pytest import xfail\n@pytest.mark.xfail\ndef test(): pytest.xfail('x')\n")
    assert _xfail_uses(sample) == [2, 3, 4]
    found = {p.relative_to(ROOT).as_posix(): lines for p in sorted(TESTS.rglob("*.py")) if (lines := _xfail_uses(p))}
    assert not found, f"expected no xfail in tests/ (a test passes or fails); received it at {found}"


def _blanket_deprecation_filters(filters: list[str]) -> list[str]:
    """The warning filters (pytest's ``action:message:category:module`` form) that ignore a
    DeprecationWarning whatever its message and wherever it comes from."""
    out = []
    for spec in filters:
        parts = [p.strip() for p in spec.split(":")] + [""] * 5
        action, message, category, module = parts[:4]
        if action == "ignore" and category.rpartition(".")[2] in ("DeprecationWarning", "Warning", "") \
                and not message and not module:
            out.append(spec)
    return out


def _warning_filters() -> list[str]:
    """Every warning filter pytest is configured with (pytest.ini, pyproject.toml, -W in addopts)."""
    filters: list[str] = []
    addopts = ""
    ini = ROOT / "pytest.ini"
    if ini.exists():
        config = configparser.ConfigParser()
        config.read(ini)
        if config.has_section("pytest"):
            filters += config["pytest"].get("filterwarnings", "").split("\n")
            addopts += config["pytest"].get("addopts", "")
    pyproject = ROOT / "pyproject.toml"
    if pyproject.exists():
        options = tomllib.loads(pyproject.read_text()).get("tool", {}).get("pytest", {}).get("ini_options", {})
        filters += list(options.get("filterwarnings", []))
        extra = options.get("addopts", "")
        addopts += " " + (" ".join(extra) if isinstance(extra, list) else extra)
    words = addopts.split()
    filters += [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-W"]
    filters += [w[2:] for w in words if w.startswith("-W") and len(w) > 2]
    return [f for f in filters if f.strip()]


def test_no_blanket_deprecation_filter():
    assert (_blanket_deprecation_filters(["ignore::DeprecationWarning", "ignore::DeprecationWarning:keras.*",
                                          "ignore:old name:DeprecationWarning", "error"])
            == ["ignore::DeprecationWarning"])
    blanket = _blanket_deprecation_filters(_warning_filters())
    assert not blanket, f"expected DeprecationWarning filters to name a third-party module; received {blanket}"
