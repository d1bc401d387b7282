"""The state store's schema: its migrations, how times are stored, and the records it returns.

Times are aware UTC datetimes at the API and integer microseconds since the epoch on disk, so they
round-trip exactly and compare in SQL. `PRAGMA user_version` counts the migrations applied.
"""

from __future__ import annotations

import json
import sqlite3  # noqa: TC003 - row types in the records' constructors
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "JOB_TABLES",
    "LISTED",
    "MIGRATIONS",
    "PENDING",
    "CancelRecord",
    "Decision",
    "Silence",
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
    # Silences: `uuids` is a JSON list (empty: any job); a NULL selector does not narrow.
    # `ended_at` is set by `silence expire`; `expiry_logged_at` once `silence_expired` is logged.
    """
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        uuids TEXT NOT NULL,
        owner TEXT,
        app TEXT,
        rule TEXT,
        ended_at INTEGER,
        ended_by TEXT,
        expiry_logged_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX silences_expires ON silences (expires_at);
    """,
    # Each cancelJob request of a cancel, written before it is sent (see state/attempts.py).
    """
    CREATE TABLE cancel_attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        cancel_id INTEGER NOT NULL REFERENCES cancels (id) ON DELETE CASCADE,
        job_uuid TEXT NOT NULL,
        rule TEXT NOT NULL,
        written_at INTEGER NOT NULL,
        answered_at INTEGER,
        answer TEXT,
        detail TEXT
    );
    CREATE INDEX cancel_attempts_job_rule ON cancel_attempts (job_uuid, rule);
    CREATE INDEX cancel_attempts_cancel ON cancel_attempts (cancel_id);
    """,
    # When the request of an attempt was handed to the socket (None: it never left).
    "ALTER TABLE cancel_attempts ADD COLUMN left_at INTEGER;",
    # Jobs that ended, kept for the budgets' windows (see state/ended.py): one row per job, so a
    # job read twice is counted once.
    """
    CREATE TABLE ended_jobs (
        job_uuid TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        remote_started INTEGER,
        remote_ended INTEGER NOT NULL,
        node_count INTEGER,
        record TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX ended_jobs_remote_ended ON ended_jobs (remote_ended);
    """,
    # The lease of the one active instance (see state/lease.py): one row, `token` incremented at
    # each takeover; times in microseconds by the database's clock where it has one.
    """
    CREATE TABLE leader (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        host TEXT NOT NULL,
        boot TEXT NOT NULL,
        pid BIGINT NOT NULL,
        token BIGINT NOT NULL,
        acquired_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    );
    """,
)

PENDING = "pending"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
JOB_TABLES = (
    "status_clocks",
    "decisions",
    "cancel_attempts",
    "cancels",
    "notifications",
    "jobs",
)


LISTED = 2**62
"""`jobs.last_seen_at` of a job the last whole poll listed: later than any time, so never pruned
(a poll then writes nothing for an unchanged job); it becomes a time when the job leaves the
listing."""


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


@dataclass(frozen=True, slots=True)
class Silence:
    """A time-boxed "let these jobs run": matching jobs are spared from cancels until `until`.

    Job selectors (`uuids`, any of them; `owner`, exact; `app`, a glob on appId) must all hold;
    none at all means every job (only created with an explicit `--all`). `rule`, when set,
    spares the jobs from that rule (or budget) only. `ended_at` is set when it was expired by hand
    before `expires_at`.
    """

    id: str
    created_at: datetime
    expires_at: datetime
    created_by: str
    reason: str
    uuids: tuple[str, ...] = ()
    owner: str | None = None
    app: str | None = None
    rule: str | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    expiry_logged: bool = False

    @property
    def until(self) -> datetime:
        """When the silence stops sparing jobs: its expiry, or when it was expired by hand."""
        if self.ended_at is not None and self.ended_at < self.expires_at:
            return self.ended_at
        return self.expires_at

    def active(self, now: datetime) -> bool:
        """True while it spares jobs: created at or before `now`, and `now` before `until`."""
        return self.created_at <= now < self.until

    @property
    def matches_every_job(self) -> bool:
        """No job selector: every job (of `rule`, when set)."""
        return not self.uuids and self.owner is None and self.app is None

    def describe(self) -> str:
        """What it matches, as a person reads it: `uuid a, b; owner alice; rule frontera-12h`."""
        parts = []
        if self.uuids:
            parts.append(f"uuid {', '.join(self.uuids)}")
        if self.owner is not None:
            parts.append(f"owner {self.owner}")
        if self.app is not None:
            parts.append(f"app {self.app}")
        if not parts:
            parts.append("every job")
        if self.rule is not None:
            parts.append(f"rule {self.rule}")
        return "; ".join(parts)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Silence:
        created_at, expires_at = from_db(row["created_at"]), from_db(row["expires_at"])
        assert created_at is not None
        assert expires_at is not None
        uuids = json.loads(row["uuids"])
        return cls(
            id=row["id"],
            created_at=created_at,
            expires_at=expires_at,
            created_by=row["created_by"],
            reason=row["reason"],
            uuids=tuple(str(u) for u in uuids),
            owner=row["owner"],
            app=row["app"],
            rule=row["rule"],
            ended_at=from_db(row["ended_at"]),
            ended_by=row["ended_by"],
            expiry_logged=row["expiry_logged_at"] is not None,
        )
