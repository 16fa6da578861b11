"""The shape of the source, checked on the files (``ast``, nothing imported but ``rbk`` itself).

**The import graph.** Its nodes are the ``.py`` files of ``rbk/`` and ``benchmarks/``. Every
import statement of a file, at module level or inside a function or class (``import a.b``,
``from a.b import c``, relative imports resolved against the file's package), is an edge from
that file to the file of the imported module: ``from a.b import c`` goes to ``a/b/c.py`` (or
``a/b/c/__init__.py``) when ``c`` is a module, else to the file of ``a.b``; importing a package
is importing its ``__init__.py``. A benchmark script's bare ``import x`` is its sibling
``benchmarks/x.py`` (the scripts run with their folder on ``sys.path``). Imports of other
packages (numpy, jax, ...) and imports under ``if TYPE_CHECKING:`` (never executed) are no
edges. ``importlib.import_module`` of a registry entry (:mod:`rbk.experiments`) is no import
statement and no edge: the registry names modules, it does not import them at load.

Rules:

* the graph has no cycle (a strongly connected component of more than one file, or a file
  importing itself);
* a package's ``__init__`` may import its own submodules, but no file of a package imports the
  ``__init__`` of a package it is in (a submodule never imports its parent: the cycle the
  package's re-exports would close);
* no file imports a private name (``_x``) from another module, neither ``from m import _x`` nor
  ``m._x`` on a module it imported (a private *module* such as ``rbk._checks`` may be imported
  for its public names);
* no module of ``rbk/`` outside ``rbk/experiments/`` names an experiment (``exp1`` ... ``exp4``,
  ``exp3b``) in its code or strings (comments aside): the engine, the library and the command
  line know experiments only through the registry;
* no file in ``rbk/`` is over 700 lines;
* ``rbk.models`` never imports ``rbk.kernels`` (kernels know the models' descriptions, not the
  reverse), and nothing in ``rbk`` imports ``rbk.cli``.
Every check is strict.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

import rbk

SRC = Path(rbk.__file__).parent
ROOT = SRC.parent
BENCH = ROOT / "benchmarks"
FILES = sorted(SRC.rglob("*.py")) + sorted(BENCH.glob("*.py"))

#: An experiment's name as code or strings spell it.
EXPERIMENT_NAME = re.compile(r"\bexp(?:1|2|3b|3|4)\b")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in FILES}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every import statement of ``tree``, at any depth, except under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _file_of(name: str, importer: Path) -> Path | None:
    if name in MODULES:
        return MODULES[name]
    if importer.parent == BENCH and f"benchmarks.{name}" in MODULES:  # a script's sibling
        return MODULES[f"benchmarks.{name}"]
    return None


def _absolute(node: ast.ImportFrom, importer: Path) -> str:
    if not node.level:
        return node.module or ""
    pkg = _module_name(importer).split(".")
    if importer.name != "__init__.py":
        pkg = pkg[:-1]
    pkg = pkg[: len(pkg) - (node.level - 1)]
    return ".".join(pkg + ([node.module] if node.module else []))


def _edges(path: Path) -> list[tuple[Path, ast.AST]]:
    """``(imported file, import node)`` for every import of a file of the graph by ``path``."""
    out = []
    for node in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [_file_of(a.name, path) for a in node.names]
        else:
            mod = _absolute(node, path)
            targets = [_file_of(f"{mod}.{a.name}", path) or _file_of(mod, path) for a in node.names]
        out += [(t, node) for t in targets if t is not None]
    return out


GRAPH = {p: {t for t, _ in _edges(p)} for p in FILES}


def _cycles() -> list[list[Path]]:
    """The strongly connected components of :data:`GRAPH` with a cycle (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in GRAPH[v]:
                out.append(sorted(comp))

    for v in FILES:
        if v not in index:
            visit(v)
    return out


def _params(paths, check):
    """``pytest.param`` per file, with an id naming the check and the file."""
    return [pytest.param(p, id=f"{check}:{_rel(p)}") for p in paths]


# ------------------------------------------------------------------------------------- the graph


def test_the_graph_sees_known_edges():
    """The graph is what the docstring says (a check of the checker on edges known to exist)."""
    assert MODULES["rbk.sweep"] == SRC / "sweep" / "__init__.py"
    assert SRC / "models.py" in GRAPH[SRC / "kernels" / "analytic.py"]  # from rbk.models import ... (module level)
    assert SRC / "sweep" / "store.py" in GRAPH[SRC / "sweep" / "driver.py"]
    assert SRC / "sweep" / "__init__.py" in GRAPH[SRC / "cli.py"]  # from rbk import sweep, inside a function
    cc = SRC / "experiments" / "concept_class"
    assert cc / "planner.py" in GRAPH[cc / "study.py"]  # imported on call
    assert cc / "study.py" not in GRAPH[cc / "planner.py"]  # only under TYPE_CHECKING
    assert BENCH / "_common.py" in GRAPH[BENCH / "roofline.py"]  # a script's sibling


def test_no_import_cycle():
    """No cycle among the files of rbk/ and benchmarks/."""
    bad = _cycles()
    assert not bad, "import cycles: " + "; ".join(" <-> ".join(map(_rel, c)) for c in bad)


@pytest.mark.parametrize("path", [p for p in FILES if p.is_relative_to(SRC)], ids=lambda p: _rel(p))
def test_no_submodule_imports_its_parent_package(path):
    parents = {q / "__init__.py" for q in path.parents if q.is_relative_to(SRC) and (q / "__init__.py").exists()}
    parents.discard(path)
    bad = sorted(_rel(t) for t in GRAPH[path] & parents)
    assert not bad, f"{_rel(path)} imports the package it is in: {bad}"


# ----------------------------------------------------------------------------- private names


def _private_uses(path: Path, text: str | None = None) -> list[str]:
    """The private names of other modules ``path`` (or ``text`` read as that file) uses."""
    tree = ast.parse(path.read_text() if text is None else text)
    own = _module_name(path)
    bound: dict[str, str] = {}  # local name -> module it names (of the graph)
    out = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            mod = _absolute(node, path)
            if mod == "__future__" or _file_of(mod, path) is None and not mod.startswith("rbk"):
                continue
            for a in node.names:
                full = f"{mod}.{a.name}"
                if _file_of(full, path) is not None:
                    bound[a.asname or a.name] = full
                elif a.name.startswith("_") and not a.name.startswith("__") and mod != own:
                    out.append(f"from {mod} import {a.name}")
        else:
            for a in node.names:
                if _file_of(a.name, path) is not None and a.asname:
                    bound[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in bound):  # fmt: skip
            out.append(f"{bound[node.value.id]}.{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            chain, v = [node.attr], node.value  # rbk.x._y written out in full
            while isinstance(v, ast.Attribute):
                chain.append(v.attr)
                v = v.value
            if isinstance(v, ast.Name) and v.id == "rbk":
                out.append(".".join(["rbk", *reversed(chain)]))
    return sorted(set(out))


@pytest.mark.parametrize("path", _params(FILES, "private"))
def test_no_private_name_imported_from_another_module(path):
    bad = _private_uses(path)
    assert not bad, f"{_rel(path)} uses private names of other modules: {bad}"


def test_the_private_name_check_sees_them():
    """The checker finds both forms (a check of the checker, on a text read as a file of the engine)."""
    text = ("from rbk.stats import _key\nfrom rbk import plots\nplots._private()\nfrom rbk._checks import check_int\n"
            "from rbk._args import integer as _int\nimport rbk.train\nrbk.train._prepare\n")  # fmt: skip
    assert _private_uses(SRC / "sweep" / "store.py", text) == [
        "from rbk.stats import _key", "rbk.plots._private", "rbk.train._prepare"]


# ------------------------------------------------------------------- experiments, size, direction


def _names_an_experiment(text: str) -> list[str]:
    hits = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.NAME, tokenize.STRING) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            hits += [f"line {tok.start[0]}: {m.group()}" for m in EXPERIMENT_NAME.finditer(tok.string)]
    return hits


@pytest.mark.parametrize("path", [p for p in FILES if p.is_relative_to(SRC) and not p.is_relative_to(SRC / "experiments")],
                         ids=lambda p: _rel(p))  # fmt: skip
def test_only_the_experiments_name_an_experiment(path):
    hits = _names_an_experiment(path.read_text())
    assert not hits, f"{_rel(path)} names experiments: {hits[:5]}"


def test_the_experiment_name_check_sees_them():
    assert _names_an_experiment('x = "rbk exp3b --out d"  # exp1\nif e == "exp4": pass\n') == [
        "line 1: exp3b", "line 2: exp4"]
    assert not _names_an_experiment("experiment = 'Experiment 1'; exp10 = 1\n")


@pytest.mark.parametrize("path", _params([p for p in FILES if p.is_relative_to(SRC)], "size"))
def test_no_file_over_700_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= 700, f"{_rel(path)} has {n} lines"


def test_models_never_import_kernels():
    models_imports = {t for t in GRAPH[SRC / "models.py"] if t.is_relative_to(SRC / "kernels")}
    assert not models_imports and SRC / "models.py" in GRAPH[SRC / "kernels" / "analytic.py"]


def test_the_library_never_imports_the_command_line():
    """``rbk.cli`` imports the experiments and the library; nothing imports it back (at any level)."""
    for path in FILES:
        if path.is_relative_to(SRC) and path.name not in ("cli.py", "__main__.py"):
            assert SRC / "cli.py" not in GRAPH[path], f"{_rel(path)} imports rbk.cli"


def test_the_engine_imports_no_experiment():
    """``rbk.sweep`` (driver, store, protocol) knows studies only through the protocol."""
    for path in sorted((SRC / "sweep").glob("*.py")):
        bad = sorted(_rel(t) for t in GRAPH[path] if t.is_relative_to(SRC / "experiments"))
        assert not bad, f"{_rel(path)} imports {bad}"


def _family(path: Path) -> str | None:
    """The experiment family package (``rbk/experiments/<family>/``) a file is in, if any."""
    rel = path.relative_to(SRC).parts if path.is_relative_to(SRC) else ()
    return rel[1] if len(rel) > 2 and rel[0] == "experiments" else None


FAMILIES = sorted({_family(p) for p in FILES} - {None})


def test_no_experiment_family_imports_another():
    """An experiment family (a package of ``rbk/experiments/``) imports the engine, the library and
    ``rbk.experiments.common``, never another family: what two families share lives in the library."""
    assert {"concept_class", "multi_index", "hierarchy"} <= set(FAMILIES)
    bad = [f"{_rel(p)} -> {_rel(t)}" for p in FILES if _family(p) for t in GRAPH[p]
           if _family(t) and _family(t) != _family(p)]  # fmt: skip
    assert not bad, "experiment families import each other: " + "; ".join(bad)


def test_the_family_check_sees_them():
    """The family of a file is its package under rbk/experiments/ (a check of the checker)."""
    assert _family(SRC / "experiments" / "hierarchy" / "study.py") == "hierarchy"
    assert _family(SRC / "experiments" / "common.py") is None and _family(SRC / "learners" / "kernel.py") is None
