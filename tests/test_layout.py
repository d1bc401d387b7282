"""The layout of docs/architecture.md, checked: imports point one way, and `rules/` stays pure.

Every `watchdog` import in every module (at run time or for type checking, at the top or inside a
function) is read with `ast`, so a new arrow running back up fails here before it confuses a
reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "watchdog"

# docs/architecture.md, "Imports point one way": a module imports its own package or lower levels.
LEVELS: dict[str, int] = {
    "__main__": 0,
    "cli": 1,
    "tools": 1,
    "service": 2,
    "act": 3,
    "poll": 4,
    "rules": 4,
    "events": 4,
    "config": 5,
    "sim": 5,
    "state": 6,
    "tapis": 6,
    "jobs": 6,
    "logs": 6,
    "errors": 7,
    "durations": 7,
    "redaction": 7,
    "__init__": 7,
}


def step_of(module: str) -> str:
    """The step (sub-package or top-level module) a dotted `watchdog...` name belongs to."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports(path: Path) -> set[str]:
    """The steps a module imports from (`from watchdog import x` counts as the module x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "watchdog":
                found.update(a.name if a.name in LEVELS else "__init__" for a in node.names)
            elif node.module.startswith("watchdog."):
                found.add(step_of(node.module))
        elif isinstance(node, ast.Import):
            found.update(step_of(a.name) for a in node.names if a.name.startswith("watchdog."))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def own_step(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_step_has_a_level() -> None:
    assert {own_step(p) for p in MODULES} <= LEVELS.keys()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    step = own_step(path)
    upward = {t for t in imports(path) - {step} if LEVELS[t] <= LEVELS[step]}
    assert not upward, f"{step} (level {LEVELS[step]}) imports {sorted(upward)}"


def test_the_simulator_uses_only_durations_errors_and_jobs() -> None:
    used = set().union(*(imports(p) for p in (PACKAGE / "sim").rglob("*.py"))) - {"sim"}
    assert used <= {"durations", "errors", "jobs"}


def test_only_the_tapis_client_imports_tapipy() -> None:
    importers = {
        str(p.relative_to(PACKAGE))
        for p in MODULES
        if any(
            (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("tapipy"))
            or (isinstance(n, ast.Import) and any(a.name.startswith("tapipy") for a in n.names))
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        )
    }
    assert importers == {"tapis/client.py"}


@pytest.mark.parametrize("path", sorted((PACKAGE / "rules").glob("*.py")), ids=lambda p: p.name)
def test_rules_do_no_io_and_never_read_the_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    } | {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not modules & {"anyio", "asyncio", "sqlite3", "time", "socket", "os", "tapipy"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.Await)]
    clock_calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in {"now", "utcnow", "today", "time", "monotonic"}
    ]
    assert not clock_calls
