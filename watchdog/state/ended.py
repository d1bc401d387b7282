"""The ended-jobs table of the state store: what budgets' windows need of jobs that ended.

The daemon searches Tapis for jobs that ended since its last look (`poll.ended`) and keeps each
one here, once (the job's uuid is the key, so a job read again is not counted twice); the last
look is kept too, so a restart searches from there and loses nothing. Rows whose run ended before
the longest budget window are pruned. `StateStore` inherits these methods.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from watchdog.state.schema import from_db, to_db
from watchdog.state.snapshot import EndedJob

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable
    from contextlib import AbstractContextManager
    from datetime import datetime

__all__ = ["ENDED_FROM_KEY", "ENDED_LOOK_KEY", "EndedTable"]

ENDED_LOOK_KEY = "ended_jobs_looked_at"
"""`meta` key: the time the searches for ended jobs covered up to."""
ENDED_FROM_KEY = "ended_jobs_covered_from"
"""`meta` key: the time the searches for ended jobs covered from."""
_TEXT = ("app_id", "exec_system_id", "queue", "owner", "name")


class EndedTable:
    """Ended jobs in the state store (mixed into `StateStore`). Raises `StateError` like it."""

    if TYPE_CHECKING:

        def _write(
            self, *, durable: bool = False, fenced: bool = True
        ) -> AbstractContextManager[sqlite3.Connection]: ...

        def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...

    def record_ended(self, jobs: Iterable[EndedJob], covered: tuple[datetime, datetime]) -> int:
        """Keep the ended jobs (a job already kept is left as it is) and the span the searches
        have covered (from, up to), in one transaction. Returns how many jobs were new."""
        rows = [
            (
                job.uuid,
                job.status,
                None if job.remote_started is None else to_db(job.remote_started),
                to_db(job.remote_ended),
                job.node_count,
                json.dumps(
                    {
                        **{key: getattr(job, key) for key in _TEXT},
                        "tags": list(job.tags),
                        "created": None if job.created is None else to_db(job.created),
                    }
                ),
            )
            for job in jobs
        ]
        with self._write(durable=True) as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO ended_jobs (job_uuid, status, remote_started, "
                "remote_ended, node_count, record) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = conn.total_changes - before
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    (ENDED_FROM_KEY, str(to_db(covered[0]))),
                    (ENDED_LOOK_KEY, str(to_db(covered[1]))),
                ],
            )
        return added

    def ended_coverage(self) -> tuple[datetime, datetime] | None:
        """The span the searches for ended jobs have covered (from, up to), or None: never."""
        rows = self._query(
            "SELECT (SELECT value FROM meta WHERE key = ?), (SELECT value FROM meta WHERE key = ?)",
            (ENDED_FROM_KEY, ENDED_LOOK_KEY),
        )
        start, end = rows[0][0], rows[0][1]
        if start is None or end is None:
            return None
        low, high = from_db(int(start)), from_db(int(end))
        assert low is not None
        assert high is not None
        return low, high

    def ended_since(self, start: datetime) -> tuple[EndedJob, ...]:
        """The kept jobs whose run ended at or after `start`."""
        rows = self._query(
            "SELECT * FROM ended_jobs WHERE remote_ended >= ? ORDER BY remote_ended, job_uuid",
            (to_db(start),),
        )
        return tuple(_ended(row) for row in rows)

    def prune_ended(self, before: datetime) -> int:
        """Forget the jobs whose run ended before `before`. Returns the rows removed."""
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM ended_jobs WHERE remote_ended < ?", (to_db(before),)
            ).rowcount


def _ended(row: sqlite3.Row) -> EndedJob:
    record = json.loads(row["record"])
    ended = from_db(row["remote_ended"])
    assert ended is not None
    return EndedJob(
        uuid=row["job_uuid"],
        status=row["status"],
        remote_started=from_db(row["remote_started"]),
        remote_ended=ended,
        node_count=row["node_count"],
        tags=tuple(record.get("tags") or ()),
        created=from_db(record.get("created")),
        **{key: str(record.get(key) or "") for key in _TEXT},
    )
