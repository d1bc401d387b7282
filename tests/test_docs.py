"""The documentation names only what exists: every file or folder docs/architecture.md mentions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from watchdog import errors

REPO = Path(__file__).resolve().parent.parent
# A backticked token that reads as a path: a folder (`act/`) or a file with a known suffix.
PATH = re.compile(r"`([A-Za-z0-9_.*/-]+(?:/|\.(?:py|md|yaml|yml|json|toml|service)))`")
# Where a short name may live: the repository, the package, the tests, the docs.
ROOTS = (REPO, REPO / "watchdog", REPO / "tests", REPO / "docs")


def named_paths(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    names = {m.group(1) for m in PATH.finditer(text)}
    # Absolute paths are on the target machine; `DIR/...` and the like are placeholders.
    return sorted(n for n in names if not n.startswith("/") and not n.split("/")[0].isupper())


def exists(name: str) -> bool:
    for root in ROOTS:
        if "*" in name:
            if any(root.glob(name)):
                return True
        elif (root / name).exists():
            return True
    # A bare module name in a table row under its package (`fields.py` beside `config/...`).
    return "/" not in name and any((REPO / "watchdog").rglob(name))


@pytest.mark.parametrize("doc", ["docs/architecture.md", "docs/systemd.md", "README.md"])
def test_docs_name_no_file_the_repository_lacks(doc: str) -> None:
    missing = [name for name in named_paths(REPO / doc) if not exists(name)]
    assert not missing, f"{doc} names {missing}, which the repository lacks"


def test_readme_exit_code_table_has_every_code_the_command_line_uses() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| ")}
    codes = {
        name: value
        for name, value in vars(errors).items()
        if name.startswith("EXIT_") and name != "EXIT_OK"
    }
    missing = {name: value for name, value in codes.items() if str(value) not in rows}
    assert not missing, f"README's exit-code table lacks {missing}"
