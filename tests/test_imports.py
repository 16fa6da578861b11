"""Import structure, checked on the source: nothing in rbk imports ``rbk.cli``; ``rbk.models`` never imports ``rbk.kernels`` (one-way:
kernels know the models' descriptions), and each module of ``rbk.sweep`` imports at module level
only the package's modules of the layers below it (no import cycle inside the package)."""

import ast
from pathlib import Path

import rbk

SRC = Path(rbk.__file__).parent
#: rbk.sweep's modules, lowest layer first
SWEEP_LAYERS = ("study", "errors", "learners", "spec", "planner", "runners", "cost", "provenance", "store", "driver")


def _imports(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in tree.body if module_level_only else ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # from rbk import kernels
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_models_never_import_kernels():
    assert "rbk.kernels" not in _imports(SRC / "models.py", module_level_only=False)
    assert "rbk.models" in _imports(SRC / "kernels" / "analytic.py", module_level_only=True)


def test_sweep_modules_import_only_lower_layers():
    assert sorted(p.stem for p in (SRC / "sweep").glob("*.py")) == sorted(SWEEP_LAYERS + ("__init__",))
    for i, name in enumerate(SWEEP_LAYERS):
        mods = _imports(SRC / "sweep" / f"{name}.py", module_level_only=True)
        assert "rbk.sweep" not in mods, f"rbk.sweep.{name} imports the package itself"
        deps = {m.split(".")[2] for m in mods if m.startswith("rbk.sweep.")}
        above = sorted(deps - set(SWEEP_LAYERS[:i]))
        assert not above, f"rbk.sweep.{name} imports {above} (a layer above it)"


def test_the_library_never_imports_the_command_line():
    """``rbk.cli`` imports the experiments and the library; nothing imports it back (at any level)."""
    for path in sorted(SRC.rglob("*.py")):
        if path.name in ("cli.py", "__main__.py"):
            continue
        mods = _imports(path, module_level_only=False)
        assert not {"rbk.cli"} & mods and "rbk.cli" not in {m.rsplit(".", 1)[0] for m in mods if m.startswith("rbk.cli.")}, (
            f"{path.relative_to(SRC)} imports rbk.cli")
