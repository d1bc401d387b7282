"""The state store's files are owner-only whatever the umask, and a bad state.path is named."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from watchdog.errors import ConfigError
from watchdog.state.files import check_state_path, path_problem
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_store_files_and_created_directories_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "made" / "deeper" / "state.db"
    store = StateStore.open(path)
    try:
        store.append_event({"event": "poll_completed", "jobs_seen": 1})
        side = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in side)
        assert {p.name: mode(p) for p in (path, *side)} == {
            "state.db": 0o600,
            "state.db-wal": 0o600,
            "state.db-shm": 0o600,
        }
        assert mode(tmp_path / "made") == 0o700
        assert mode(tmp_path / "made" / "deeper") == 0o700
    finally:
        store.close()


@pytest.mark.usefixtures("open_umask")
def test_an_existing_directory_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    StateStore.open(tmp_path / "state.db").close()
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "state.db") == 0o600


def test_a_world_readable_store_is_tightened_at_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore.open(path).close()
    for suffix in ("", "-wal"):
        extra = path.with_name(path.name + suffix)
        extra.touch()
        extra.chmod(0o644)
    StateStore.open(path).close()
    assert mode(path) == 0o600
    if path.with_name("state.db-wal").exists():
        assert mode(path.with_name("state.db-wal")) == 0o600


def a_directory(path: Path) -> Path:
    path.mkdir()
    return path


def a_text_file(path: Path) -> Path:
    path.write_text("notes", encoding="utf-8")
    return path


def under_a_file(path: Path) -> Path:
    path.write_text("x", encoding="utf-8")
    return path / "state.db"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (a_directory, "is a directory: name a file in it, such as"),
        (a_text_file, "exists and is not an SQLite database"),
        (under_a_file, "is not a directory"),
    ],
    ids=["directory", "not-a-database", "under-a-file"],
)
def test_a_path_that_cannot_hold_a_database_is_named(
    tmp_path: Path, make: Callable[[Path], Path], expected: str
) -> None:
    path = make(tmp_path / "target")
    found = path_problem(path)
    assert found is not None
    assert expected in found
    with pytest.raises(ConfigError) as caught:
        check_state_path(path, source="c.yaml")
    assert caught.value.problems == (f"state.path: {found}",)


def test_paths_that_can_hold_a_database(tmp_path: Path) -> None:
    assert path_problem(tmp_path / "new.db") is None
    assert path_problem(tmp_path / "a" / "b" / "new.db") is None
    StateStore.open(tmp_path / "old.db").close()
    assert path_problem(tmp_path / "old.db") is None
    (tmp_path / "empty.db").touch()
    assert path_problem(tmp_path / "empty.db") is None
