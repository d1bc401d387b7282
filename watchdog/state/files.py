"""The state store's files on disk: can a path hold a database, and owner-only permissions.

The store holds every job's owner, name and inputs and the audit trail, so nobody but the
daemon's user may read it, whatever umask the process was started with (the unit's `UMask=`
covers only systemd runs). The database file is created 0600 before SQLite opens it; SQLite gives
its `-wal` and `-shm` files the database's own mode, and a file left 0644 by an older version is
tightened at open. A directory the store creates is 0700; an existing one is left as it is (it
may be the working directory).
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import TYPE_CHECKING

from watchdog.errors import ConfigError, StateError

if TYPE_CHECKING:
    from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
SIDE_FILES = ("-wal", "-shm", "-journal")
_SQLITE_HEADER = b"SQLite format 3\x00"


def path_problem(path: Path) -> str | None:
    """Why `path` cannot hold the state store, or None when it can (created or opened).

    Checks what would make `run` fail later: a directory, a file that is no SQLite database, a
    missing directory that cannot be created, a file or directory this user cannot write.
    """
    if path.is_dir():
        return f"{path} is a directory: name a file in it, such as {path / 'state.db'}"
    if path.exists():
        found = _file_problem(path)
        if found is not None:
            return found
        directory = path.parent
    else:
        directory = path.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        if not directory.is_dir():
            return f"cannot create {path}: {directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot create files in {directory}: not writable by this user"
    return None


def _file_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path} is not a regular file"
    if not os.access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by this user"
    try:
        with path.open("rb") as stream:
            header = stream.read(len(_SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    if header and header != _SQLITE_HEADER:
        return f"{path} exists and is not an SQLite database"
    return None


def check_state_path(path: Path, *, source: str | None = None) -> None:
    """`path_problem` as the configuration error naming `state.path`.

    Raises:
        ConfigError: `path` cannot hold the state store.
    """
    found = path_problem(path)
    if found is not None:
        raise ConfigError([f"state.path: {found}"], source=source)


def prepare(path: Path) -> None:
    """Create the store's directory (0700) and an empty database file (0600) if missing, and
    tighten an existing database and its side files to 0600.

    Raises:
        StateError: the directory or the file cannot be created.
    """
    missing: list[Path] = []
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    if not directory.is_dir():
        msg = f"state store {path}: cannot create its directory: {directory} is not a directory"
        raise StateError(msg)
    for created in reversed(missing):
        try:
            created.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        except OSError as exc:
            msg = f"state store {path}: cannot create its directory {created}: {exc}"
            raise StateError(msg) from exc
        os.chmod(created, DIR_MODE)  # noqa: PTH101 - mkdir's mode is cut by the umask
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise StateError(f"state store {path}: cannot create: {exc}") from exc
    else:
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
    tighten(path)


def tighten(path: Path) -> None:
    """Make the database file and its existing side files owner-only (0600), when we own them."""
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        with contextlib.suppress(OSError):
            mode = candidate.stat().st_mode
            if stat.S_ISREG(mode) and stat.S_IMODE(mode) & ~FILE_MODE:
                candidate.chmod(FILE_MODE)
