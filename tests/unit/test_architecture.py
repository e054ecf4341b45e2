"""The shape of ``connector/``: no import cycles, no huge modules, Faust internals in one place.

These are read from the source with :mod:`ast`, not from what happens to be imported at run
time, so an import hidden inside a function (or under ``if TYPE_CHECKING:``) counts as much as
one at the top of a module: a cycle through a function-level import is still a cycle, it only
fails later and more confusingly (a partially initialised module at first call).

Edges: ``import a.b`` is an edge to ``a.b`` (a package means its ``__init__``); ``from .x import
y`` is an edge to ``x.y`` when that is a submodule (``from . import simulator``), else to ``x``
(``y`` is defined there). Only modules of ``connector/`` are nodes; importing a submodule does
not add an edge to its parent packages, because every module would then depend on its
package's ``__init__``.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONNECTOR = ROOT / "connector"
MAX_LINES = 600

# Private attributes of Faust and aiokafka the worker relies on. They change without notice
# between releases, so exactly one module may touch them (and its tests pin their behaviour).
FAUST_PRIVATE_NAMES = frozenset(
    {
        "_acked",
        "_acked_index",
        "_gap",
        "_committed_offset",
        "_unacked_messages",
        "_new_offset",
        "_read_offset",
        "_actors",
        "_recovery_started_at",
        "_ensure_producer",
        "_wait_on_metadata",
        "_fetch_max_wait_ms",
    }
)
FAUST_INTERNALS_MODULE = "connector.worker.faust_internals"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def connector_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CONNECTOR.rglob("*.py"))}


def imported_names(name: str, path: Path, modules: Collection[str]) -> set[str]:
    """Every module name ``path`` imports (anywhere in it), relative imports resolved;
    ``from pkg import x`` names ``pkg.x`` when that is one of ``modules``, else ``pkg``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = connector_modules()
    return {
        name: {m for m in imported_names(name, path, modules) if m in modules and m != name}
        for name, path in modules.items()
    }


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as a chain ``[a, b, ..., a]``, or None when the graph has none."""
    done: set[str] = set()
    path: list[str] = []
    on_path: dict[str, int] = {}

    def visit(node: str) -> list[str] | None:
        on_path[node] = len(path)
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return [*path[on_path[nxt] :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        path.pop()
        del on_path[node]
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "connector.model" in graph["connector.pipeline"]  # module level, relative
    assert "connector.worker" in graph["connector.cli"]  # inside a function
    assert "connector.settings" in graph["connector.codec"]  # under TYPE_CHECKING
    # `from . import simulator` inside a function: an edge to the submodule.
    assert "connector.exchanges.bitget.simulator" in graph["connector.exchanges.bitget"]
    # `from ..exchanges import registry` (a submodule) is an edge to it, not to the package.
    assert "connector.exchanges.registry" in graph["connector.sandbox.server"]
    assert "connector.exchanges" not in graph["connector.sandbox.server"]
    # A name from a package (`from .resilience import FetchCoalescer`) is an edge to __init__.
    assert "connector.resilience" in graph["connector.pipeline"]


def test_find_cycle_reports_the_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_graph_of_connector_has_no_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_is_longer_than_the_limit() -> None:
    simulators = set(CONNECTOR.glob("exchanges/*/simulator.py"))
    assert simulators, "the venue simulators moved; update this test"
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in connector_modules().values()
        if path not in simulators
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"modules over {MAX_LINES} lines: {too_long}"


def faust_private_names_used(source: str) -> set[str]:
    used: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in FAUST_PRIVATE_NAMES:
            used.add(node.attr)
        elif (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name in FAUST_PRIVATE_NAMES
        ):
            used.add(node.name)
    return used


def test_the_private_name_check_sees_attributes_and_overrides() -> None:
    source = (
        "class C:\n"
        "    async def _ensure_producer(self):\n"
        "        return self.app._acked, _gap, '_actors'\n"
    )
    # A bare name or a string is not an attribute access (nor an override).
    assert faust_private_names_used(source) == {"_ensure_producer", "_acked"}


def test_faust_private_names_live_in_one_module() -> None:
    users = {
        name: sorted(used)
        for name, path in connector_modules().items()
        if (used := faust_private_names_used(path.read_text(encoding="utf-8")))
    }
    assert list(users) == [FAUST_INTERNALS_MODULE], f"Faust/aiokafka private names in: {users}"


# Value types and the modules they need: anything may import these, so they import only each other.
LEAVES = frozenset(
    {"connector.errors", "connector.secrets", "connector.account", "connector.version"}
)


def test_value_type_modules_are_leaves() -> None:
    graph = import_graph()
    assert {m: sorted(graph[m] - LEAVES) for m in sorted(LEAVES)} == {m: [] for m in sorted(LEAVES)}
