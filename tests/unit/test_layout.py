"""The layout's rules: imports go one way, no cycles, no private names across, small modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import PROJECT_DIR

PACKAGES = ("streams", "producers", "storepulse")
# A module importing from the left may not import anything matching a prefix on the right.
FORBIDDEN = {
    "streams": ("producers", "storepulse"),
    "producers": ("storepulse",),
    "streams.contract": (
        "streams.settings",
        "streams.kafka",
        "streams.store",
        "streams.worker",
        "streams.query",
        "streams.exporter",
    ),
    "streams.store": ("streams.worker", "streams.query", "streams.exporter"),
    "streams.worker": ("streams.query", "streams.exporter"),
    "streams.query": ("streams.worker", "streams.exporter"),
    "streams.exporter": ("streams.worker",),
}
MAX_LINES = 450


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((PROJECT_DIR / package).rglob("*.py")):
            parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def imports(name: str, path: Path) -> Iterator[tuple[str, list[str], bool]]:
    """(module imported, names taken from it, whether at module level)."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names], id(node) in top


ALL = dict(modules())


@pytest.mark.parametrize("name", sorted(ALL))
def test_imports_go_one_way(name: str) -> None:
    rules = [
        bad for scope, bad in FORBIDDEN.items() if name == scope or name.startswith(scope + ".")
    ]
    for target, _, _ in imports(name, ALL[name]):
        for bad in (b for rule in rules for b in rule):
            assert not (target == bad or target.startswith(bad + ".")), f"{name} imports {target}"


@pytest.mark.parametrize("name", sorted(ALL))
def test_no_private_name_of_another_module(name: str) -> None:
    for target, names, _ in imports(name, ALL[name]):
        if target.split(".")[0] not in PACKAGES:
            continue
        assert not any(part.startswith("_") for part in target.split(".")[1:]) or (
            target.rsplit(".", 1)[0] == name.rsplit(".", 1)[0]
        ), f"{name} imports the private module {target}"
        private = [n for n in names if n.startswith("_") and n != "__version__"]
        assert not private, f"{name} imports private {private} from {target}"


def test_no_import_cycle() -> None:
    # Imports inside functions count too: they are loops all the same, only deferred.
    graph = {
        name: {t for t, _, _ in imports(name, path) if t in ALL and t != name}
        for name, path in ALL.items()
    }
    # `from package import module` names the module as the package: follow both.
    for name, path in ALL.items():
        for target, names, _ in imports(name, path):
            for n in names:
                if f"{target}.{n}" in ALL:
                    graph[name].add(f"{target}.{n}")
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = [*trail[trail.index(node) :], node]
            # A package importing its own submodules is not a cycle through them.
            if not all(c.startswith(cycle[0] + ".") or c == cycle[0] for c in cycle):
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


@pytest.mark.parametrize("name", sorted(ALL))
def test_modules_stay_small_and_say_what_they_are_for(name: str) -> None:
    text = ALL[name].read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{name}: split it by concern"
    doc = ast.get_docstring(ast.parse(text))
    assert doc, f"{name} has no docstring"
