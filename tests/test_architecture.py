"""The layering docs/ARCHITECTURE.md draws, checked against the code's imports (lazy and
type-checking imports included): no cycle, dependencies pointing inward, a light client."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "docpilotd"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for candidate in [module, *(f"{module}.{alias.name}" for alias in node.names)]:
                if candidate in known and candidate != name:
                    targets.add(candidate)
            if module.split(".")[0] != "docpilotd":
                targets.add(module)
        elif isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
    return targets


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def test_the_import_graph_has_no_cycle() -> None:
    graph = {m: {t for t in targets if t in _modules()} for m, targets in _graph().items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join([*visiting[visiting.index(module):], module])
        visiting.append(module)
        for target in sorted(graph[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_dependencies_point_inward() -> None:
    for module, targets in _graph().items():
        ours = {t for t in targets if t.startswith("docpilotd.")}
        if module.startswith("docpilotd.domain"):
            assert all(t.startswith("docpilotd.domain") or t == "docpilotd.errors" for t in ours), (module, ours)
        if module.startswith("docpilotd.storage"):
            assert not any(t.startswith(("docpilotd.runtime", "docpilotd.client")) for t in ours), (module, ours)
        if module == "docpilotd.protocol":
            assert ours <= {"docpilotd.domain.model", "docpilotd.domain"}, ours


def test_the_client_imports_neither_asyncio_nor_msgspec_nor_the_daemon() -> None:
    graph = _graph()
    for module, targets in graph.items():
        if module.startswith("docpilotd.client"):
            heavy = {t for t in targets if t.split(".")[0] in ("asyncio", "msgspec", "apscheduler", "watchdog")}
            inner = {t for t in targets if t.startswith(("docpilotd.runtime", "docpilotd.storage", "docpilotd.protocol"))}
            assert not heavy and not inner, (module, heavy | inner)


def test_only_the_completion_generator_imports_shtab() -> None:
    importers = {m for m, targets in _graph().items() if any(t.split(".")[0] == "shtab" for t in targets)}
    assert importers == {"docpilotd.client.completions"}, importers
    callers = {m for m, targets in _graph().items() if "docpilotd.client.completions" in targets}
    assert callers == {"docpilotd.client.hooks"}, callers
