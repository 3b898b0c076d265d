"""The package's shape: wings without import cycles, modules a reader can hold, walls between modules.

These read the source (AST), so they run in milliseconds and fail with the module and line to fix.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hagstudy.config import repo_root

PACKAGE = repo_root() / "hagstudy"
MAX_LINES = 600


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``hagstudy.engine.kv``); packages by their ``__init__``."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def runtime_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package modules this module imports when it runs (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: runtime_imports(path, name, set(mods)) for name, path in mods.items()}


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {shown: n for shown, n in ((str(p.relative_to(PACKAGE.parent)), len(p.read_text().splitlines()))
                                      for p in PACKAGE.rglob("*.py")) if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


def test_the_import_graph_has_no_cycle():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle (function-level imports count too): " + " -> ".join(cycle))


def test_the_cycle_check_can_fail(tmp_path):
    (tmp_path / "a.py").write_text("from pkg import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from pkg import a\n")
    known = {"pkg.a", "pkg.b"}
    assert runtime_imports(tmp_path / "a.py", "pkg.a", known) == {"pkg.b"}
    assert runtime_imports(tmp_path / "b.py", "pkg.b", known) == {"pkg.a"}


def private_definitions(path: Path) -> set[str]:
    """The private names a module defines: functions, classes, methods and module-level assignments."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def private_reaches(path: Path, defined_elsewhere: set[str]) -> list[str]:
    """Where a module uses a private name that another module of the package defines (``x._name``, or
    ``from x import _name``): what a module keeps to itself may change without notice."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hagstudy"):
            found += [f"line {node.lineno}: from {node.module} import {a.name}"
                      for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Attribute) and node.attr in defined_elsewhere:
            if not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reaches_into_another_modules_private_names():
    mods = modules()
    own = {name: private_definitions(path) for name, path in mods.items()}
    reaches = {}
    for name, path in mods.items():
        elsewhere = set().union(*(names for other, names in own.items() if other != name)) - own[name]
        if found := private_reaches(path, elsewhere):
            reaches[str(path.relative_to(PACKAGE.parent))] = found
    assert not reaches, f"private names used outside the module that defines them: {reaches}"


def test_the_private_check_can_fail(tmp_path):
    (tmp_path / "m.py").write_text("from hagstudy.x import _helper\n\ndef f(engine):\n    engine._settle()\n")
    assert private_reaches(tmp_path / "m.py", {"_settle"}) == [
        "line 1: from hagstudy.x import _helper", "line 4: engine._settle"]


def test_no_stand_in_objects_imitate_a_model():
    users = [str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if "SimpleNamespace" in p.read_text()]
    assert not users, f"SimpleNamespace stands in for a real type in {users}: give the protocol the method instead"


# What a wing may not import (runtime imports, function-level ones included): the engine and the replay
# know nothing of the study, so they can be changed, and reused, without reading it.
FORBIDDEN = {
    "hagstudy.engine": ("hagstudy.method", "hagstudy.report", "hagstudy.study"),
    "hagstudy.replay": ("hagstudy.method", "hagstudy.report", "hagstudy.study"),
}


def test_wings_import_only_what_they_may():
    wrong = {}
    for name, imports in graph().items():
        for wing, banned in FORBIDDEN.items():
            if name == wing or name.startswith(wing + "."):
                bad = sorted(m for m in imports if any(m == b or m.startswith(b + ".") for b in banned))
                if bad:
                    wrong[name] = bad
    assert not wrong, f"wing modules importing what their wing may not: {wrong}"
