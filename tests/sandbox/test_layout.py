"""The sandbox package's modules import one another without a cycle (imports under TYPE_CHECKING,
which never run, aside), and its public names stay importable from the package."""

from __future__ import annotations

import ast
from pathlib import Path

import thor_cli.sandbox as sandbox_pkg

PKG = Path(sandbox_pkg.__file__).parent


def _runtime_imports(path: Path) -> set[str]:
    """Sandbox modules ``path`` imports when it runs (at the top or inside a function)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):  # from thor_cli.sandbox import pool: the module too
            names = [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["thor_cli", "sandbox"] and len(parts) > 2 and (PKG / f"{parts[2]}.py").exists():
                out.add(parts[2])
    return out


def test_no_import_cycle() -> None:
    graph = {p.stem: _runtime_imports(p) for p in PKG.glob("*.py") if p.stem != "__init__"}
    assert "server" not in graph["pool"] and "pool" not in graph["client"], graph
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, f"import cycle: {' -> '.join((*path, mod))}"
        if mod in done:
            return
        for dep in graph.get(mod, ()):
            visit(dep, (*path, mod))
        done.add(mod)

    for mod in graph:
        visit(mod, ())


def test_public_names() -> None:
    from thor_cli.sandbox import client, pool, session

    assert sandbox_pkg.SandboxPool is pool.SandboxPool and sandbox_pkg.Session is session.Session
    assert sandbox_pkg.RemoteSandbox is client.RemoteSandbox and sandbox_pkg.RemoteSession is client.RemoteSession
    assert isinstance(sandbox_pkg.SandboxPool.connect("unix:/nowhere"), client.RemoteSandbox)
