"""The package's folders are its layers: model < chain < keeper < sim < report < cli.

Every module of backstop/ is parsed with `ast` (nothing is imported), and every import in it,
function-level ones included, is resolved to the module it loads. A module may import its own
layer and the layers below, never one above; the imports between modules form no cycle; and each
`ape run` script in scripts/ stays a thin command over the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "backstop"
LAYERS = ("model", "chain", "keeper", "sim", "report", "cli")
MAX_SCRIPT_LINES = 110


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `name` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from package import module` loads the module; `from module import name`, the module.
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def layer_of(module: str) -> int:
    """The layer's rank; the package's own __init__ ranks below every layer (it imports none)."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module} is in no layer: put it in one of backstop/{', backstop/'.join(LAYERS[:-1])} or backstop/cli.py")
    return LAYERS.index(parts[1])


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} ({LAYERS[layer_of(module)] if layer_of(module) >= 0 else 'package root'}) imports {target} ({LAYERS[layer_of(target)]})"
        for module, targets in graph.items() for target in targets if layer_of(target) > layer_of(module)
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_every_module_is_in_a_layer():
    graph = import_graph()
    assert "backstop.model.protocol" in graph and "backstop.cli" in graph
    for module in graph:
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_scripts_are_thin():
    lengths = {path.name: len(path.read_text().splitlines()) for path in sorted((ROOT / "scripts").glob("*.py"))}
    assert lengths, "no scripts found"
    assert {name: lines for name, lines in lengths.items() if lines > MAX_SCRIPT_LINES} == {}, "move their logic into backstop/"


def test_the_checks_catch_what_they_look_for():
    """The checks themselves, on a made-up graph: an upward import and a cycle are found."""
    graph = {
        "backstop.model.adl": {"backstop.sim.scenario"},
        "backstop.sim.scenario": {"backstop.sim.replay"},
        "backstop.sim.replay": {"backstop.sim.scenario", "backstop.model.adl"},
    }
    assert upward_imports(graph) == ["backstop.model.adl (model) imports backstop.sim.scenario (sim)"]
    assert find_cycle(graph) == ["backstop.model.adl", "backstop.sim.scenario", "backstop.sim.replay", "backstop.model.adl"]
