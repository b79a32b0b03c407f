"""The house's floors: every import of lenet_exp and its plugins, lazy ones inside functions included, looks down the
layers below (README: Layout); nothing makes a circle; lenet_exp never imports hydra_plugins; a plugin imports only
the package's surface for launchers and sweepers, never another plugin; nothing reaches into Hydra's private modules;
no function is longer than 50 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import REPO

# lenet_exp's modules, bottom to top: a module imports only from its own floor or those below it
LAYERS = [
    ["words", "errors", "files", "folders"],
    ["data", "schema", "overrides", "settings", "metrics", "plugins"],
    [
        "config",
        "model",
        "augment",
        "schedule",
        "checkpoint",
        "cluster",
        "signals",
        "console",
        "logger",
        "build",
        "fused",
        "importance",
        "around",
    ],
    ["run_folder", "resume", "sweep_record"],
    [
        "member",
        "loop",
        "jobs",
        "training",
        "summary_table",
        "summary_plot",
        "summary",
        "launch",
        "halving",
        "timing",
        "ranged",
    ],
    [
        "preflight",
        "sweep_checks",
        "flags",
        "task",
        "__main__",
        "summarize",
        "sweep_bench",
        "pipelines",
        "bench",
        "api",
        "evaluate",
    ],
    ["__init__"],
]
FLOOR = {f"lenet_exp.{m}": n for n, floor in enumerate(LAYERS) for m in floor}
# what a plugin of ours may import from lenet_exp: its plugins' settings, the launchers' and the sweeper's surface
PLUGIN_SURFACE = {"lenet_exp.plugins", "lenet_exp.launch", "lenet_exp.halving", "lenet_exp.ranged", "lenet_exp.around"}
MAX_FUNCTION_LINES = 50


def sources() -> dict[str, Path]:
    """Every module of lenet_exp and of our plugins: dotted name -> file."""
    files = [*sorted((REPO / "lenet_exp").glob("*.py")), *sorted((REPO / "hydra_plugins").glob("lenet_exp_*/*.py"))]
    return {".".join(p.relative_to(REPO).with_suffix("").parts): p for p in files}


def imports_of(name: str, path: Path) -> set[str]:
    """The modules a file imports, at its top and inside its functions alike (`from lenet_exp import x` names
    lenet_exp.x where that is a module)."""
    found, modules = set(), sources()
    package = name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's own package
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def own(module: str) -> str | None:
    """The module of ours an import names (a package's __init__ for the package itself), or None."""
    modules = sources()
    if module in modules:
        return module
    if f"{module}.__init__" in modules:
        return f"{module}.__init__"
    return None


GRAPH = {name: {own(m) for m in imports_of(name, path)} - {None, name} for name, path in sources().items()}


def test_every_module_of_lenet_exp_has_a_floor():
    missing = [m for m in GRAPH if m.startswith("lenet_exp.") and m not in FLOOR]
    assert not missing, f"place these modules on a floor of LAYERS (and in the README's layout): {missing}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("lenet_exp.")))
def test_a_module_imports_only_from_its_floor_and_below(module):
    upward = [m for m in GRAPH[module] if m.startswith("lenet_exp.") and FLOOR.get(m, 99) > FLOOR.get(module, -1)]
    assert not upward, f"{module} (floor {FLOOR.get(module)}) imports from above: {upward}"
    plugins = [m for m in imports_of(module, sources()[module]) if m.startswith("hydra_plugins")]
    assert not plugins, f"{module} imports plugins: {plugins}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("hydra_plugins.")))
def test_a_plugin_imports_only_the_surface_and_no_other_plugin(module):
    package = module.rsplit(".", 1)[0]
    wrong = [
        m
        for m in GRAPH[module]
        if (m.startswith("lenet_exp.") and m not in PLUGIN_SURFACE)
        or (m.startswith("hydra_plugins.lenet_exp_") and not m.startswith(f"{package}."))
    ]
    assert not wrong, f"{module} imports {wrong}; a plugin may import {sorted(PLUGIN_SURFACE)} and its own package"


def test_no_import_circle():
    done, path, circles = set(), [], []

    def visit(m):
        if m in path:
            circles.append([*path[path.index(m) :], m])
            return
        if m in done:
            return
        path.append(m)
        for n in sorted(GRAPH.get(m, ())):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(GRAPH):
        visit(m)
    assert not circles, f"import circles: {circles[:3]}"


def test_nothing_imports_hydras_private_modules():
    private = {n: sorted(m for m in imports_of(n, p) if m.startswith("hydra._internal")) for n, p in sources().items()}
    assert not {n: m for n, m in private.items() if m}


def test_no_function_is_longer_than_50_lines():
    long = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, path in sources().items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_the_readme_shows_the_floors_as_the_test_holds_them():
    """The README's layout lists each floor's modules, bottom to top, as LAYERS does."""
    text = (REPO / "README.md").read_text()
    for n, floor in enumerate(LAYERS[:-1]):
        line = next((ln for ln in text.splitlines() if ln.startswith(f"{n} | ")), "")
        shown = [w.strip(" ,") for w in line.split("|")[1].split()] if "|" in line else []
        assert shown == [f"{m}.py" for m in floor], f"README's floor {n}: {shown}"
