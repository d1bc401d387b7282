"""The state store's schema: its migrations, how times are stored, and the records it returns.

Times are aware UTC datetimes at the API and integer microseconds since the epoch on disk, so they
round-trip exactly and compare in SQL. `PRAGMA user_version` counts the migrations applied.
"""

from __future__ import annotations

import sqlite3  # noqa: TC003 - row types in the records' constructors
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "JOB_TABLES",
    "MIGRATIONS",
    "PENDING",
    "CancelRecord",
    "Decision",
    "from_db",
    "now_utc",
    "to_db",
]

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        job_uuid TEXT PRIMARY KEY,
        status TEXT,
        last_seen_at INTEGER NOT NULL,
        terminal_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX jobs_last_seen ON jobs (last_seen_at);
    CREATE TABLE status_clocks (
        job_uuid TEXT NOT NULL,
        status TEXT NOT NULL,
        entered_at INTEGER NOT NULL,
        PRIMARY KEY (job_uuid, status)
    ) WITHOUT ROWID;
    CREATE TABLE decisions (
        job_uuid TEXT NOT NULL,
        rule TEXT NOT NULL,
        first_match_at INTEGER,
        warned_at INTEGER,
        acted_at INTEGER,
        cleared_at INTEGER,
        outcome TEXT,
        PRIMARY KEY (job_uuid, rule)
    ) WITHOUT ROWID;
    CREATE TABLE cancels (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_uuid TEXT NOT NULL,
        rule TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        begun_at INTEGER NOT NULL,
        sent_at INTEGER,
        finished_at INTEGER,
        final_status TEXT,
        latency_s REAL,
        detail TEXT
    );
    CREATE INDEX cancels_job_rule ON cancels (job_uuid, rule);
    CREATE INDEX cancels_unfinished ON cancels (finished_at) WHERE finished_at IS NULL;
    CREATE INDEX cancels_sent ON cancels (sent_at);
    CREATE TABLE notifications (
        job_uuid TEXT NOT NULL,
        rule TEXT NOT NULL,
        event TEXT NOT NULL,
        claimed_at INTEGER NOT NULL,
        PRIMARY KEY (job_uuid, rule, event)
    ) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        job_uuid TEXT,
        rule TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX events_at ON events (at);
    CREATE INDEX events_job ON events (job_uuid) WHERE job_uuid IS NOT NULL;
    """,
)

PENDING = "pending"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
JOB_TABLES = ("status_clocks", "decisions", "cancels", "notifications", "jobs")


def to_db(at: datetime) -> int:
    if at.tzinfo is None:
        msg = f"naive datetime {at.isoformat()}: the state store takes aware UTC datetimes"
        raise ValueError(msg)
    return (at - _EPOCH) // _MICRO


def from_db(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + value * _MICRO


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Decision:
    """What happened between one job and one rule. `first_match_at` is None once cleared."""

    job_uuid: str
    rule: str
    first_match_at: datetime | None
    warned_at: datetime | None
    acted_at: datetime | None
    cleared_at: datetime | None
    outcome: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Decision:
        return cls(
            job_uuid=row["job_uuid"],
            rule=row["rule"],
            first_match_at=from_db(row["first_match_at"]),
            warned_at=from_db(row["warned_at"]),
            acted_at=from_db(row["acted_at"]),
            cleared_at=from_db(row["cleared_at"]),
            outcome=row["outcome"],
        )


@dataclass(frozen=True, slots=True)
class CancelRecord:
    """One cancel of a job for a rule, from intent (`sent_at` None) to outcome (`finished_at`)."""

    id: int
    job_uuid: str
    rule: str
    dry_run: bool
    outcome: str
    begun_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    final_status: str | None
    latency_s: float | None
    detail: str | None

    @property
    def pending(self) -> bool:
        """True until `finish_cancel` recorded an outcome."""
        return self.finished_at is None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> CancelRecord:
        begun_at = from_db(row["begun_at"])
        assert begun_at is not None
        return cls(
            id=row["id"],
            job_uuid=row["job_uuid"],
            rule=row["rule"],
            dry_run=bool(row["dry_run"]),
            outcome=row["outcome"],
            begun_at=begun_at,
            sent_at=from_db(row["sent_at"]),
            finished_at=from_db(row["finished_at"]),
            final_status=row["final_status"],
            latency_s=row["latency_s"],
            detail=row["detail"],
        )
