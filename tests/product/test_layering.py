"""No import cycle among the project's modules, function-local imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mixing_env", "rl_models", "benchmarks")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source (any scope)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
                # Importing a.b.c runs a.b's __init__ first (unless the importer is inside a.b,
                # where it is already running): an edge too.
                parent = target.rpartition(".")[0]
                while parent:
                    if parent in modules and not (name + ".").startswith(parent + "."):
                        graph[name].add(parent)
                    parent = parent.rpartition(".")[0]
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_graph_holds_function_local_imports():
    graph = import_graph()
    # rl_models.app.callbacks imports evaluate inside a method only.
    assert "rl_models.app.evaluate" in graph["rl_models.app.callbacks"]


def test_graph_holds_the_packages_an_import_runs_first():
    graph = import_graph()
    # rl_models.app.module_policy imports mixing_env.data.song: mixing_env.data's __init__ runs
    # first; a module inside a package does not depend on its own package's __init__.
    assert "mixing_env.data" in graph["rl_models.app.module_policy"]
    assert "rl_models.algorithms" not in graph["rl_models.algorithms.sequence_learners"]


def test_no_import_cycle_among_project_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("lower", ["mixing_env", "rl_models.registry", "rl_models.algorithms",
                                   "rl_models.checkpoints", "rl_models.modules",
                                   "rl_models.attention_lstm", "rl_models.distributions"])
def test_lower_layers_do_not_import_the_application(lower):
    graph = import_graph()
    checked = [m for m in graph if m == lower or m.startswith(lower + ".")]
    assert checked, lower
    for module in checked:
        upward = {m for m in graph[module] if m.startswith(("rl_models.app", "benchmarks"))}
        assert not upward, (module, upward)


def test_the_environment_does_not_import_the_model():
    graph = import_graph()
    for module, imports in graph.items():
        if module.startswith("mixing_env"):
            assert not {m for m in imports if m.startswith("rl_models")}, module
