"""The shape of the house, checked: the core speaks its own types, imports flow one way,
and the request path stays in small functions."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

EDGE = ROOT / "edge"
# The doors translate the wire; the client speaks it. Nothing else may import edge.v1.
WIRE_MODULES = {"edge.server", "edge.client", "edge.cli", "edge.v1.router_pb2_grpc"}
# The stages a request passes through, and what they run on.
REQUEST_PATH = ["engine.py", "pipeline", "router/policy.py", "cost_gate.py", "cache_policy.py", "validation.py",
                "backends/threaded.py", "backends/llama.py", "backends/remote.py", "server.py", "http_api.py"]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    """edge modules `path` imports; module level only leaves out function bodies and TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edge"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("edge"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in EDGE.rglob("*.py")}
    return {name: {m for m in _imports(path, module_level_only=True) if m in modules and m != name}
            for name, path in modules.items()}


def test_no_import_cycle_between_edge_modules():
    graph = _graph()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt])
                return True
            if nxt not in state and visit(nxt, trail + [node]):
                return True
        state[node] = 2
        return False

    assert not any(visit(n, []) for n in sorted(graph) if n not in state), " -> ".join(cycle)


def test_only_the_doors_import_the_wire_types():
    offenders = sorted(
        _module(p) for p in EDGE.rglob("*.py")
        if _module(p) not in WIRE_MODULES and not _module(p).startswith("edge.v1")
        and any(m.startswith("edge.v1") for m in _imports(p, module_level_only=False)))
    assert offenders == []


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """(name, lines, cyclomatic complexity) of every function in `path`."""
    from radon.complexity import cc_visit

    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = {(n.name, n.lineno): n.end_lineno - n.lineno + 1 for n in ast.walk(tree)  # type: ignore[operator]
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    out = []
    for block in cc_visit(path.read_text(encoding="utf-8")):
        for f in [block, *getattr(block, "methods", [])]:
            if (f.name, f.lineno) in lines:
                out.append((f"{path.name}:{f.name}", lines[(f.name, f.lineno)], f.complexity))
    return out


def test_request_path_functions_are_small():
    paths = [p for entry in REQUEST_PATH for p in ((EDGE / entry).rglob("*.py") if (EDGE / entry).is_dir()
                                                    else [EDGE / entry])]
    too_big = [(name, n, cc) for p in paths for name, n, cc in _functions(p) if n > 60 or cc > 15]
    assert too_big == []
