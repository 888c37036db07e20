"""The structure docs/architecture.md promises, checked from the source: no import cycle
in ``app/`` or ``adapters/`` (imports inside functions and under TYPE_CHECKING count
too), and imports run downward only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "adapters")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every project module ``path`` imports, anywhere in the file."""
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name in known:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(path, known) - {name} for name, path in found.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules on it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            # a package's __init__ importing its own submodules is not a cycle of ours
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle() -> None:
    assert cycle(graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_adapters_import_only_the_model_and_errors_from_app() -> None:
    for name, deps in graph().items():
        if name.startswith("adapters"):
            from_app = {d for d in deps if d.startswith("app")}
            assert from_app <= {"app.model", "app.errors"}, (name, from_app)


def test_only_the_wiring_and_the_command_line_know_the_vendor_registry() -> None:
    registry = {"adapters"} | {f"adapters.{v}" for v in ("hookstream", "devhelm", "inboxops")}
    registry |= {"adapters.incidentio"}
    for name, deps in graph().items():
        if name.startswith("app") and deps & registry:
            assert name == "app.gateway" or name.startswith("app.cli"), name


def test_nothing_below_the_http_layer_imports_it() -> None:
    for name, deps in graph().items():
        if not name.startswith(("app.http", "app.cli")):
            assert not {d for d in deps if d.startswith("app.http")}, name


def test_the_http_layer_runs_no_sql() -> None:
    for path in (ROOT / "app" / "http").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "sqlalchemy" not in text and "import tables" not in text, path
