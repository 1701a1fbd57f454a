"""The layout's rules (docs/architecture.md), checked on the source: which folder may import
which, no import circles, argparse only in commands/, no module past about 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genkeras"
LONG_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (lazy imports count too)."""
    names = set()
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from .module import name`
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:  # `from package import module` imports the module
                module = f"{base}.{alias.name}"
                names.add(module if module in MODULES else base)
    return names


def genkeras_imports(name: str) -> set[str]:
    """The genkeras modules that module `name` imports (a package means its __init__)."""
    return {other for other in imported_names(MODULES[name]) if other in MODULES and other != name}


GRAPH = {name: genkeras_imports(name) for name in MODULES}


def test_the_graph_sees_the_imports():
    assert "genkeras.models.vae.base" in GRAPH["genkeras.models.vae.networks"]
    assert "genkeras.training.scale" in GRAPH["genkeras.training.fit"]


def test_no_import_circles():
    state: dict[str, str] = {}

    def visit(name, path):
        state[name] = "open"
        for other in sorted(GRAPH[name]):
            if state.get(other) == "open":
                cycle = path[path.index(other) :] + [other]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if other not in state:
                visit(other, [*path, other])
        state[name] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [name])


def imports_outside(prefix: str, allowed: tuple[str, ...]) -> list[str]:
    """`module -> import` pairs from modules under `prefix` to genkeras modules outside
    `allowed` (prefixes)."""
    found = []
    for name, targets in GRAPH.items():
        if name == prefix or name.startswith(prefix + "."):
            for target in targets:
                if not any(target == a or target.startswith(a + ".") for a in allowed):
                    found.append(f"{name} -> {target}")
    return found


def test_models_import_nothing_outside_models():
    assert imports_outside("genkeras.models", ("genkeras.models",)) == []


@pytest.mark.parametrize("folder", ["genkeras.evaluation", "genkeras.pictures"])
def test_evaluation_and_pictures_import_only_models_and_data(folder):
    allowed = (folder, "genkeras.models", "genkeras.data")
    assert imports_outside(folder, allowed) == []


def test_serving_does_not_import_training_or_the_registry():
    serving = imports_outside("genkeras.serving", ("genkeras.serving", "genkeras.data"))
    assert serving == []


def test_export_does_not_import_the_registry():
    assert "genkeras.registry" not in GRAPH["genkeras.export"]


def test_argparse_only_in_commands():
    users = [
        name
        for name, path in MODULES.items()
        if "argparse" in imported_names(path) and not name.startswith("genkeras.commands")
    ]
    assert users == []


def test_registry_imports_only_at_the_top():
    tree = ast.parse(MODULES["genkeras.registry"].read_text())
    body = [node for node in tree.body if not isinstance(node, ast.Expr)]  # docstring
    kinds = [isinstance(node, (ast.Import, ast.ImportFrom)) for node in body]
    assert kinds == sorted(kinds, reverse=True), "an import below other code in registry.py"


def test_no_module_is_long_without_saying_why():
    long = [
        f"{name}: {lines} lines"
        for name, path in MODULES.items()
        if (lines := len(path.read_text().splitlines())) > LONG_MODULE_LINES
        and "Longer than 400 lines because"
        not in (ast.get_docstring(ast.parse(path.read_text())) or "")
    ]
    assert long == []
