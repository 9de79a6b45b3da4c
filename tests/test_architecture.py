"""The layer contract: core ← notifications ← application, and no import cycles.

Read from the source with ``ast`` (every import counts, also one inside a function), so no lazy
import or plugin lookup slips past: ``importlib.import_module`` and ``__import__`` are refused in
the project's own code, since they would hide an edge from this check.

- core = ``engine`` except ``engine.app`` and the ``engine.cli`` shim: imports neither
  ``notifications`` nor the application layer, nor the CLI toolkits;
- ``notifications`` uses only the core's public types: no application layer, no CLI toolkits, and
  no core module whose name starts with ``_``;
- application layer = ``engine.app`` (+ the ``engine.cli`` shim): the only place that knows both.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "notifications")
CLI_TOOLKITS = ("typer", "click", "rich")


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    typing_only: bool = False      # under `if TYPE_CHECKING:`: a layer edge, but never a runtime cycle


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def scan(root: Path) -> tuple[set[str], list[Edge], list[str]]:
    """Modules, import edges (to project modules and to toolkits) and dynamic-import findings."""
    modules: dict[str, Path] = {}
    for pkg in PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            if "migrations" in p.parts:          # Alembic scripts are loaded by Alembic, not imported
                continue
            modules[module_name(p, root)] = p
    edges: list[Edge] = []
    dynamic: list[str] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for b in block.body for n in ast.walk(b)}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the submodule when it is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Call):
                fn = node.func
                callee = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
                if callee in ("import_module", "__import__"):
                    dynamic.append(f"{path.relative_to(root)}:{node.lineno}")
            for t in targets:
                if t in modules or t.split(".")[0] in CLI_TOOLKITS:
                    edges.append(Edge(name, t, node.lineno, id(node) in typing_only))
    return set(modules), edges, dynamic


def layer(mod: str) -> str:
    if mod == "engine.cli" or mod == "engine.app" or mod.startswith("engine.app."):
        return "app"
    if mod.split(".")[0] in CLI_TOOLKITS:
        return "toolkit"
    if mod.startswith("notifications"):
        return "notifications"
    return "core"


ALLOWED = {"core": {"core"}, "notifications": {"core", "notifications"},
           "app": {"core", "notifications", "app", "toolkit"}}


def violations(edges: list[Edge]) -> list[str]:
    bad = []
    for e in edges:
        src, dst = layer(e.src), layer(e.dst)
        if dst not in ALLOWED[src]:
            bad.append(f"{e.src}:{e.line} ({src}) imports {e.dst} ({dst})")
        elif src == "notifications" and dst == "core" and any(p.startswith("_") for p in e.dst.split(".")):
            bad.append(f"{e.src}:{e.line} imports the core's private module {e.dst}")
    return bad


def cycles(modules: set[str], edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if e.dst in graph and not e.typing_only:
            graph[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return out


def test_layers_point_one_way() -> None:
    _, edges, _ = scan(ROOT)
    assert violations(edges) == []


def test_no_import_cycles() -> None:
    modules, edges, _ = scan(ROOT)
    assert cycles(modules, edges) == []


def test_no_dynamic_imports() -> None:
    _, _, dynamic = scan(ROOT)
    assert dynamic == []


def test_the_contract_catches_a_wrong_import_and_a_cycle(tmp_path) -> None:
    """The check itself can fail: a core module importing notifications, and a two-module cycle."""
    for rel, text in {
        "engine/__init__.py": "", "engine/app/__init__.py": "", "notifications/__init__.py": "",
        "engine/periods.py": "def f():\n    from notifications.delivery import deliver\n",
        "engine/a.py": "from engine import b\n", "engine/b.py": "import engine.a\n",
        "engine/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from engine.d import D\n",
        "engine/d.py": "from engine.c import C\n",
        "notifications/delivery.py": "from engine.app.config import Settings\nimport rich\n",
        "engine/app/cli.py": "import typer\nfrom notifications.delivery import deliver\n", "engine/app/config.py": "",
        "engine/status.py": "import importlib\nimportlib.import_module('notifications.x')\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules, edges, dynamic = scan(tmp_path)
    bad = violations(edges)
    assert any(v.startswith("engine.periods:2 (core) imports notifications.delivery") for v in bad)
    assert any(v.startswith("notifications.delivery:1 (notifications) imports engine.app.config") for v in bad)
    assert any("imports rich (toolkit)" in v for v in bad)
    assert not any(v.startswith("engine.app.cli") for v in bad)           # the application layer may
    assert cycles(modules, edges) == [["engine.a", "engine.b"]]
    assert dynamic == ["engine/status.py:2"]
