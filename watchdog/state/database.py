"""The SQLite file under the state store: opening, migrating, transactions.

`Database` owns the connection: it opens (and creates) the file in WAL mode, applies the schema's
migrations in order (`PRAGMA user_version` counts them, and a file from a newer version is refused),
and gives its subclass `StateStore` one write transaction at a time (`_write`), consistent reads
(`_read`, `_query`) and the one helper every table shares (`_touch`). Every method raises
`StateError` when SQLite fails.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from watchdog.errors import StateError
from watchdog.state import fence, files
from watchdog.state.schema import MIGRATIONS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType


class Database:
    """One SQLite connection, migrated; the plumbing `StateStore` is built on."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self.fence: fence.Fence | None = None
        """Set while this instance holds the lease: every fenced write checks it first."""

    # -- lifecycle ---------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> Self:
        """Open (creating it and its directory, owner-only, if needed) and migrate the store.

        Raises:
            StateError: the directory cannot be created, the file is not writable or not a
                database, or it was written by a newer version (its schema is unknown here).
        """
        path = Path(path)
        files.prepare(path)
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise StateError(f"state store {path}: cannot open: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            # A poll's listing travels as one JSON parameter; the temporary b-trees SQLite builds
            # from it (100,000 uuids: a few MB) would otherwise go through a temporary file.
            conn.execute("PRAGMA temp_store=MEMORY")
            _migrate(conn, path)
            files.tighten(path)
        except sqlite3.Error as exc:
            conn.close()
            raise StateError(f"state store {path}: cannot open: {exc}") from exc
        except StateError:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        """Close the connection; later calls raise `StateError`."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The number of migrations applied to this file."""
        return int(self._query_one("PRAGMA user_version")[0])

    # -- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _write(self, *, durable: bool = False, fenced: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; `durable` syncs it to disk before returning.

        While `fence` is set, a `fenced` transaction starts with the fencing check and raises
        `LeaseLostError` (rolled back, nothing written) once another instance holds the lease.
        """
        with self._lock:
            conn = self._conn
            try:
                if durable:
                    conn.execute("PRAGMA synchronous=FULL")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        if fenced and self.fence is not None:
                            fence.check(conn, self.fence)
                        yield conn
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                finally:
                    if durable:
                        conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StateError(f"state store {self.path}: write failed: {exc}") from exc

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"state store {self.path}: read failed: {exc}") from exc

    def _query_one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row:
        return self._query(sql, params)[0]

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same state of the file."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateError(f"state store {self.path}: read failed: {exc}") from exc

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Call `callback` with every SQL statement run from now on (None stops it).

        For measuring how many statements a step costs (bench/, tests), not for logging.
        """
        with self._lock:
            self._conn.set_trace_callback(callback)

    @staticmethod
    def _touch(conn: sqlite3.Connection, job_uuid: str, at: int) -> None:
        conn.execute(
            "INSERT INTO jobs (job_uuid, last_seen_at) VALUES (?, ?) ON CONFLICT (job_uuid) "
            "DO UPDATE SET last_seen_at = max(last_seen_at, excluded.last_seen_at)",
            (job_uuid, at),
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the migrations this file lacks, each in its own transaction.

    Raises:
        StateError: the file has a newer schema than this version knows.
        sqlite3.Error: a migration failed (rolled back).
    """
    known = len(MIGRATIONS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        _check_version(version, path)
        for number in range(version, known):
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _check_version(version: int, path: Path) -> None:
    if version > len(MIGRATIONS):
        raise StateError(
            f"state store {path}: schema version {version} is newer than this "
            f"tapis-watchdog knows ({len(MIGRATIONS)}); upgrade tapis-watchdog or use another file"
        )


def _statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip():
        yield buffer
