"""Reading the state store from outside the daemon: the status page, `report`, the digest.

`StateReader` opens its own connection, read-only (`mode=ro`), so the page's request threads and
an offline `report` never take the daemon's write lock, never create a store that is not there,
and never change one: WAL mode lets them read while the daemon writes. Every method raises
`StateError` when SQLite fails.

The last poll is recorded under the meta key `last_poll` by `record_last_poll` (the daemon calls
it after each good poll): its jobs by status, so an offline report shows the same watched-jobs
figures as the page. It is written only when those counts change (a poll where nothing changed
writes as little as it can); its time is then the latest `poll_completed` in the audit trail.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import orjson

from watchdog.errors import StateError
from watchdog.state.schema import Decision, from_db, to_db
from watchdog.state.silences import SilenceReads

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping
    from types import TracebackType

    from watchdog.state.store import StateStore

__all__ = ["LAST_POLL_KEY", "LastPoll", "StateReader", "record_last_poll"]

LAST_POLL_KEY = "last_poll"
# Only placeholders are formatted into it.
_HOURLY = (
    "SELECT at / 3600000000, event, count(*), max(json_extract(body, '$.jobs_seen')) "
    "FROM events WHERE at >= ? AND event IN ({marks}) GROUP BY 1, 2"
)


@dataclass(frozen=True, slots=True)
class LastPoll:
    """What the last good poll saw: when, and how many active jobs in each status."""

    at: datetime
    by_status: Mapping[str, int]

    @property
    def jobs_seen(self) -> int:
        return sum(self.by_status.values())


def record_last_poll(store: StateStore, at: datetime, by_status: Mapping[str, int]) -> None:
    """Remember the last good poll (time, jobs by status) for the page and `report`."""
    counts = dict(sorted(by_status.items()))
    current = store.get_meta(LAST_POLL_KEY)
    if current is not None:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            if orjson.loads(current).get("by_status") == counts:
                return
    body = {"at": at.isoformat(), "by_status": counts}
    store.set_meta(LAST_POLL_KEY, orjson.dumps(body).decode())


class StateReader(SilenceReads):
    """A read-only view of one state store file (its silences too). Build it with
    `StateReader.open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> StateReader:
        """Open the store at `path` for reading.

        Raises:
            StateError: there is no file at `path`, or it cannot be read as a state store.
        """
        path = Path(path)
        if not path.is_file():
            raise StateError(
                f"no state store at {path}: the daemon has not run with this configuration "
                "here (state.path)"
            )
        try:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=5.0
            )
            conn.row_factory = sqlite3.Row
            conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.Error as exc:
            raise StateError(f"state store {path}: cannot read: {exc}") from exc
        return cls(conn, path)

    def close(self) -> None:
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

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StateError(f"state store {self.path}: read failed: {exc}") from exc

    def meta(self, key: str) -> str | None:
        """The value stored under `key`, or None."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def last_poll(self) -> LastPoll | None:
        """The last good poll recorded by `record_last_poll`, or None (none yet, or unreadable)."""
        text = self.meta(LAST_POLL_KEY)
        if text is None:
            return None
        try:
            body = orjson.loads(text)
            at = datetime.fromisoformat(body["at"])
            by_status = {str(k): int(v) for k, v in body["by_status"].items()}
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None
        rows = self._query(
            "SELECT at FROM events WHERE event = 'poll_completed' ORDER BY at DESC LIMIT 1"
        )
        completed = from_db(rows[0][0]) if rows else None
        if completed is not None and completed > at:
            at = completed
        return LastPoll(at=at, by_status=by_status)

    def events_since(
        self,
        since: datetime,
        *,
        names: Collection[str] | None = None,
        job_uuid: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Audit events at or after `since`, oldest first; only `names` and one job if given."""
        sql = "SELECT body FROM events WHERE at >= ?"
        params: list[Any] = [to_db(since)]
        if names is not None:
            sql += f" AND event IN ({', '.join('?' * len(names))})"
            params.extend(names)
        if job_uuid is not None:
            sql += " AND job_uuid = ?"
            params.append(job_uuid)
        sql += " ORDER BY at, id LIMIT ?"
        params.append(-1 if limit is None else limit)
        return [orjson.loads(row[0]) for row in self._query(sql, params)]

    def last_event(self, name: str) -> dict[str, Any] | None:
        """The latest event called `name`, or None."""
        rows = self._query(
            "SELECT body FROM events WHERE event = ? ORDER BY at DESC, id DESC LIMIT 1", (name,)
        )
        return orjson.loads(rows[0][0]) if rows else None

    def count_events(self, name: str, after: datetime | None) -> int:
        """How many events called `name` are later than `after` (all of them when None)."""
        row = self._query(
            "SELECT count(*) FROM events WHERE event = ? AND at > ?",
            (name, -1 if after is None else to_db(after)),
        )[0]
        return int(row[0])

    def count_since(self, since: datetime) -> dict[str, int]:
        """How many events of each name are at or after `since`."""
        rows = self._query(
            "SELECT event, count(*) FROM events WHERE at >= ? GROUP BY event ORDER BY event",
            (to_db(since),),
        )
        return {str(row[0]): int(row[1]) for row in rows}

    def hourly(
        self, since: datetime, names: Collection[str]
    ) -> list[tuple[int, str, int, int | None]]:
        """Per hour (Unix hours) and event name from `since`: the count of events and the
        largest `jobs_seen` among them."""
        marks = ", ".join("?" * len(names))
        rows = self._query(_HOURLY.format(marks=marks), (to_db(since), *names))
        return [
            (int(r[0]), str(r[1]), int(r[2]), None if r[3] is None else int(r[3])) for r in rows
        ]

    def open_matches(self) -> list[Decision]:
        """Decisions matched and neither acted on nor cleared, oldest match first."""
        rows = self._query(
            "SELECT * FROM decisions WHERE first_match_at IS NOT NULL AND acted_at IS NULL "
            "ORDER BY first_match_at, job_uuid, rule"
        )
        return [Decision.from_row(r) for r in rows]

    def decisions_for(self, job_uuid: str) -> list[Decision]:
        """Every decision about the job, by rule name."""
        rows = self._query("SELECT * FROM decisions WHERE job_uuid = ? ORDER BY rule", (job_uuid,))
        return [Decision.from_row(r) for r in rows]

    def status_entry(self, job_uuid: str, status: str) -> datetime | None:
        """When the job entered `status` on its current visit, as the daemon recorded it."""
        rows = self._query(
            "SELECT entered_at FROM status_clocks WHERE job_uuid = ? AND status = ?",
            (job_uuid, status),
        )
        return from_db(rows[0][0]) if rows else None

    def knows_job(self, job_uuid: str) -> bool:
        """Whether the store has any record of the job (its row, or an event about it)."""
        sql = (
            "SELECT 1 FROM jobs WHERE job_uuid = ?1 "
            "UNION ALL SELECT 1 FROM events WHERE job_uuid = ?1 LIMIT 1"
        )
        return bool(self._query(sql, (job_uuid,)))
