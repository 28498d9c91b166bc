"""veilnet's imports point inward and form no cycle (read from the source, every import counted: module level,
inside functions and under TYPE_CHECKING alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import veilnet

ROOT = Path(veilnet.__file__).parent
INNER = ("protocol", "chain", "confidential", "store", "models", "tasks")  # what services are built on
SERVICES = ("gateway", "miner", "validator", "devnet", "cli")


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("veilnet", *path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The veilnet modules (or packages) ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.startswith("veilnet")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("veilnet"):
                continue
            for alias in node.names:  # `from veilnet.x import y`: the module y when it is one, else x
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in out if module in known and module != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_inner_packages_never_import_service_packages() -> None:
    outward = sorted(f"{module} imports {target}" for module, targets in graph().items() if layer(module) in INNER
                     for target in targets if layer(target) in SERVICES)
    assert outward == [], "\n".join(outward)


def test_no_import_cycle_among_veilnet_modules() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_import_graph_is_read() -> None:
    """The checks above see real edges (a parser that found nothing would pass them)."""
    edges = graph()
    assert "veilnet.protocol.errors" in edges["veilnet.edge"]
    assert "veilnet.gateway.flow" in edges["veilnet.gateway.service"]
    assert "veilnet.chain.connect" in edges["veilnet.devnet.chain"]
    assert not any(layer(target) == "devnet" for target in edges["veilnet.chain.connect"])
