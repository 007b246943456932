"""The layers of docs/ARCHITECTURE.md, checked on the code: a module imports from its own
layer or those below at module level, Ray only where a sweep runs, and no import cycle, lazy
or not, but those listed here with their reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "raymia"

CORE, DATA, MODELS, PRIVACY, REGISTRIES, TRIAL, RESULTS, SWEEP, DRIVERS = range(1, 10)
#: Each layer's packages and top-level modules (docs/ARCHITECTURE.md, "Layers"): a module
#: sits in its package's layer. A new package or top-level module is placed here, where
#: ARCHITECTURE places it.
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        ["raymia", "raymia.errors", "raymia.registry", "raymia.deadline", "raymia.costs"], CORE
    ),
    "raymia.data": DATA,
    "raymia.models": MODELS,
    "raymia.privacy": PRIVACY,
    "raymia.mechanisms": REGISTRIES,
    "raymia.attacks": REGISTRIES,
    "raymia.trial": TRIAL,
    "raymia.results": RESULTS,
    "raymia.sweep": SWEEP,
    **dict.fromkeys(["raymia.analysis", "raymia.cli", "raymia.readme"], DRIVERS),
}
#: The modules that may import Ray: the sweep's own, and the cluster file's offline check.
RAY_MODULES = {
    "raymia.sweep.run",
    "raymia.sweep.worker",
    "raymia.sweep.recorder",
    "raymia.sweep.journal",
    "raymia.sweep.scheduler",
    "raymia.sweep.window",
    "raymia.sweep.capacity",
    "raymia.sweep.reference_tasks",
    "raymia.sweep.cluster_config",
}
#: The import cycles allowed, each through a lazy import, with why.
ALLOWED_CYCLES = {
    frozenset({"raymia.data.datasets", "raymia.data.files"}): (
        "datasets names every data set, so it hands a path to files, which builds datasets' "
        "DatasetInfo and Pool; both lazy in one direction"
    ),
}
#: Module names that more than one package uses, each for the same kind of thing.
SHARED_NAMES = {
    "registry": "the registry of mechanisms, of attacks, and the Registry class they are",
}


def layer(module: str) -> int:
    """Return a module's layer: its own entry in LAYERS, else its package's."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYERS:
            return LAYERS[".".join(parts[:end])]
    raise KeyError(module)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(name: str, source: str, known: set[str]) -> tuple[set[str], set[str], bool]:
    """Return a module's raymia imports at module level and inside functions (`if
    TYPE_CHECKING` blocks left out), and whether it imports Ray anywhere."""
    package = name.split(".")
    is_package = (
        name in known and (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()
    )
    base = package if is_package else package[:-1]
    top: set[str] = set()
    lazy: set[str] = set()
    ray = False

    def targets(node: ast.Import | ast.ImportFrom) -> set[str]:
        nonlocal ray
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            root = (
                ".".join(base[: len(base) - node.level + 1] + [node.module or ""])
                if node.level
                else node.module or ""
            )
            root = root.rstrip(".")
            names = [
                f"{root}.{a.name}" if f"{root}.{a.name}" in known else root for a in node.names
            ]
        ray |= any(n == "ray" or n.startswith("ray.") for n in names)
        return {n for n in names if n in known and n != name}

    def visit(nodes: list[ast.stmt], at_top: bool, typing: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found = targets(node)
                if not typing:
                    (top if at_top else lazy).update(found)
            elif isinstance(node, ast.If):
                checking = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                visit(node.body, at_top, typing or checking)
                visit(node.orelse, at_top, typing)
            elif isinstance(node, ast.Try):
                visit(node.body, at_top, typing)
                for handler in node.handlers:
                    visit(handler.body, at_top, typing)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(node.body, False, typing)
            elif isinstance(node, ast.With | ast.For | ast.While):
                visit(node.body, at_top, typing)

    visit(ast.parse(source).body, True, False)
    return top, lazy, ray


def graph() -> dict[str, tuple[set[str], set[str], bool]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports(name, path.read_text(), set(paths)) for name, path in paths.items()}


def upward(graph_: dict[str, tuple[set[str], set[str], bool]]) -> list[str]:
    """Return each module-level import from a lower layer into a higher one."""
    return [
        f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
        for name, (top, _, _) in sorted(graph_.items())
        for target in sorted(top)
        if layer(target) > layer(name)
    ]


def cycles(graph_: dict[str, tuple[set[str], set[str], bool]]) -> set[frozenset[str]]:
    """Return the groups of two or more modules that reach each other, lazy imports counted."""
    edges = {name: top | lazy for name, (top, lazy, _) in graph_.items()}
    reach = {name: _reach(edges, name) for name in edges}
    return {
        frozenset({name} | {m for m in reach[name] if name in reach[m]})
        for name in edges
        if name in reach[name]
    }


def _reach(edges: dict[str, set[str]], start: str) -> set[str]:
    """Return every module `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_every_module_has_its_layer():
    placed = {name: _placed(name) for name in graph()}
    missing = sorted(name for name, ok in placed.items() if not ok)
    assert not missing, f"place these in LAYERS (and docs/ARCHITECTURE.md): {missing}"
    gone = sorted(set(LAYERS) - set(graph()))
    assert not gone, f"LAYERS names a module or package that is gone: {gone}"


def _placed(name: str) -> bool:
    try:
        layer(name)
    except KeyError:
        return False
    return True


def test_no_two_modules_share_a_name_for_different_things():
    paths = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    names = [p.stem for p in paths] + [p.name for p in PACKAGE.rglob("*") if p.is_dir()]
    shared = sorted({n for n in names if names.count(n) > 1} - set(SHARED_NAMES) - {"__pycache__"})
    assert shared == [], [str(p.relative_to(PACKAGE)) for p in paths if p.stem in shared]


def test_the_layers_of_architecture_are_the_packages_here():
    text = (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text()
    listed = text[text.index("Layers, lowest first") : text.index("Ray is imported only")]
    items = dict(
        (int(number), item)
        for number, item in re.findall(r"\n(\d)\. (.*?)(?=\n\d\. |\Z)", listed, re.S)
    )
    assert sorted(items) == list(range(1, DRIVERS + 1))
    for name, number in LAYERS.items():
        short = name.removeprefix("raymia.")
        if name == "raymia":
            continue
        package = (PACKAGE / short).is_dir()
        assert (f"`{short}/`" if package else f"`{short}`") in items[number], (name, number)


def test_no_module_imports_from_a_layer_above_at_module_level():
    assert upward(graph()) == []


def test_ray_is_imported_only_where_a_sweep_runs():
    assert sorted(n for n, (_, _, ray) in graph().items() if ray and n not in RAY_MODULES) == []


def test_the_only_import_cycles_are_the_listed_ones():
    assert cycles(graph()) == set(ALLOWED_CYCLES)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from ..trial.runner import run_trial\n",
            "raymia.privacy.metrics (layer 4) imports raymia.trial.runner (layer 6)",
        ),
        (
            "import raymia.sweep.run\n",
            "raymia.privacy.metrics (layer 4) imports raymia.sweep.run (layer 8)",
        ),
    ],
)
def test_a_deliberately_upward_import_is_caught(source, expected):
    modules = graph()
    modules["raymia.privacy.metrics"] = imports("raymia.privacy.metrics", source, set(modules))
    assert expected in upward(modules)


def test_a_lazy_import_is_not_an_upward_one_but_a_new_cycle_is_caught():
    modules = graph()
    lazy = "def f():\n    from raymia.trial.runner import run_trial\n"
    modules["raymia.privacy.metrics"] = imports("raymia.privacy.metrics", lazy, set(modules))
    assert upward(modules) == []
    assert any("raymia.privacy.metrics" in group for group in cycles(modules) - set(ALLOWED_CYCLES))
