"""The package's two layers, checked on its import graph (every import, at module level or not).

- No import cycles between modules of ``margin_pipeline``, nor between its top-level folders.
- The engine (everything but ``margin_pipeline.defs``, ``margin_pipeline.definitions`` and the
  CLI above them) imports neither, and holds no Dagster definition: the assets, jobs, sensors,
  ops, graphs, executors and ``Definitions`` all live under ``margin_pipeline/defs``.
- No module imports a private Dagster module (``dagster._...``).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from margin_pipeline.settings import REPO_ROOT

PACKAGE = REPO_ROOT / "margin_pipeline"
TOP = {"margin_pipeline.definitions", "margin_pipeline.cli"}  # above the defs: load or drive them


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(path: Path) -> Iterator[str]:
    """Every module name ``path`` imports, anywhere in the file (``from a import b``: ``a.b`` when it is
    a module, else ``a``)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in MODULES else node.module


def graph() -> dict[str, set[str]]:
    return {name: {m for m in imported(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def is_engine(name: str) -> bool:
    return name not in TOP and not (
        name == "margin_pipeline.defs" or name.startswith("margin_pipeline.defs.")
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_no_cycles_between_the_top_level_packages() -> None:
    """Folders read bottom-up: contracts, store, substrate, streams; then remote, operations,
    orchestration; then defs; then definitions and the CLI. None imports one above it."""

    def folder(name: str) -> str:
        return name.split(".")[1] if "." in name else name

    edges: dict[str, set[str]] = {folder(n): set() for n in MODULES}
    for name, targets in graph().items():
        edges[folder(name)] |= {folder(t) for t in targets} - {folder(name)}
    assert cycles(edges) == []


def test_the_engine_imports_nothing_of_the_dagster_layer() -> None:
    upward = {
        (name, m) for name, targets in graph().items() if is_engine(name) for m in targets if not is_engine(m)
    }
    assert upward == set()


def test_no_private_dagster_module_is_imported() -> None:
    private = {
        (name, m)
        for name, path in MODULES.items()
        for m in imported(path)
        if m.split(".")[0].startswith("dagster") and any(part.startswith("_") for part in m.split(".")[1:])
    }
    assert private == set()


DEFINITION_TYPES = (
    dg.AssetsDefinition,
    dg.JobDefinition,
    dg.OpDefinition,
    dg.GraphDefinition,
    dg.SensorDefinition,
    dg.ScheduleDefinition,
    dg.ExecutorDefinition,
    dg.Definitions,
    type(dg.define_asset_job("probe")),
)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if is_engine(n)))
def test_engine_modules_hold_no_dagster_definition(name: str) -> None:
    module = importlib.import_module(name)
    held = [k for k, v in vars(module).items() if isinstance(v, DEFINITION_TYPES)]
    assert held == [], f"{name} holds Dagster definitions {held}: they belong under margin_pipeline/defs"
