"""The SQLite state store: status clocks, (job, rule) decisions, cancel intents, the audit trail.

One file in WAL mode, opened by the daemon (and read by `history`). Everything that must survive a
restart lives here: when a job entered its status, which rules matched it and when, every cancel
from intent to outcome, the rolling window of cancels sent, notification claims, every event, and
the silences (`state/silences.py`, written by `tapis-watchdog silence`).

Times are aware UTC datetimes at the API and integer microseconds since the epoch on disk, so they
round-trip exactly and compare in SQL. A cancel intent is committed with `synchronous=FULL` before
the cancel is sent, so not even a power loss between sending and recording can hide it; everything
else commits with `synchronous=NORMAL`, which survives a killed process (WAL) at little cost.

A poll reads what it needs in one `snapshot` and writes its plan in one `apply` (`state/batch.py`:
a fixed number of statements whatever the number of jobs); the one-row methods serve everything
else. The connection, migrations and transactions are `state/database.py`'s; a file written by a
newer tapis-watchdog is refused rather than guessed at.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from watchdog.errors import StateError
from watchdog.state import attempts, batch
from watchdog.state.audit import AuditTrail
from watchdog.state.ended import EndedTable
from watchdog.state.lease import LeaseTable
from watchdog.state.schema import (
    JOB_TABLES,
    MIGRATIONS,
    PENDING,
    CancelRecord,
    Decision,
    Silence,
    from_db,
    now_utc,
    to_db,
)
from watchdog.state.silences import SilenceTable

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from watchdog.state.attempts import Attempt
    from watchdog.state.snapshot import StateChanges, StateSnapshot

HOUR = timedelta(hours=1)

__all__ = ["MIGRATIONS", "CancelRecord", "Decision", "Silence", "StateStore"]


class StateStore(AuditTrail, LeaseTable, SilenceTable, EndedTable):
    """The daemon's memory across restarts, in one SQLite file. Build it with `StateStore.open`.

    Meant for one thread at a time (the daemon's event loop), but the connection may be opened in a
    worker thread and used elsewhere; a lock keeps accidental concurrent use safe. Every method
    raises `StateError` when SQLite fails, and `ValueError` on a naive datetime.
    """

    # -- jobs and status clocks --------------------------------------------------------------------

    def observe_jobs(self, statuses: Mapping[str, str], at: datetime) -> None:
        """Record the status of every job a poll saw (job uuid → status), in one transaction.

        A job seen in a different status than last time has started a new visit: the clock kept
        for its new status (from an earlier visit) is dropped, so `record_status_entry` records
        the new one. A listed job's records are never pruned; they age out from the first poll
        that no longer lists it. Unchanged jobs are not written at all.
        """
        with self._write() as conn:
            batch.observe(conn, statuses, at)

    def mark_terminal(self, job_uuid: str, at: datetime) -> None:
        """Remember that the job ended (kept once set); its records age out with `prune`."""
        ts = to_db(at)
        with self._write() as conn:
            self._touch(conn, job_uuid, ts)
            conn.execute(
                "UPDATE jobs SET terminal_at = coalesce(terminal_at, ?) WHERE job_uuid = ?",
                (ts, job_uuid),
            )

    def status_entry(self, job_uuid: str, status: str) -> datetime | None:
        """When the job entered `status` on its current visit to it, or None if not recorded."""
        rows = self._query(
            "SELECT entered_at FROM status_clocks WHERE job_uuid = ? AND status = ?",
            (job_uuid, status),
        )
        return from_db(rows[0][0]) if rows else None

    def record_status_entry(self, job_uuid: str, status: str, entered_at: datetime) -> datetime:
        """Record when the job entered `status`, unless this visit already has a time.

        The first time recorded for a visit wins, so a restart never resets a clock. Returns the
        time in force for the visit.
        """
        ts = to_db(entered_at)
        with self._write() as conn:
            self._touch(conn, job_uuid, ts)
            conn.execute(
                "INSERT OR IGNORE INTO status_clocks (job_uuid, status, entered_at) "
                "VALUES (?, ?, ?)",
                (job_uuid, status, ts),
            )
            row = conn.execute(
                "SELECT entered_at FROM status_clocks WHERE job_uuid = ? AND status = ?",
                (job_uuid, status),
            ).fetchone()
        result = from_db(row[0])
        assert result is not None
        return result

    def forget_status(self, job_uuid: str) -> None:
        """Drop every status clock of the job."""
        with self._write() as conn:
            conn.execute("DELETE FROM status_clocks WHERE job_uuid = ?", (job_uuid,))

    # -- one poll: read everything at once, write a plan in one transaction ------------------------

    def snapshot(self, statuses: Mapping[str, str], now: datetime) -> StateSnapshot:
        """What the store knows about a poll's jobs (job uuid → status), in one read.

        A fixed number of queries, whatever the number of jobs: their decisions and every open
        match, their status clocks, the dry-run warning claims, the breaker's window.
        """
        with self._read() as conn:
            return batch.read_snapshot(conn, statuses, now - HOUR)

    def apply(self, changes: StateChanges) -> None:
        """Write a plan's changes in one transaction (durable when it records an outcome)."""
        if changes.empty:
            return
        with self._write(durable=bool(changes.acted)) as conn:
            batch.write_changes(conn, changes)

    # -- decisions ---------------------------------------------------------------------------------

    def decision(self, job_uuid: str, rule: str) -> Decision | None:
        """The decision row of (job, rule), or None when the rule never matched the job."""
        rows = self._query(
            "SELECT * FROM decisions WHERE job_uuid = ? AND rule = ?", (job_uuid, rule)
        )
        return Decision.from_row(rows[0]) if rows else None

    def decisions_for(self, job_uuid: str) -> list[Decision]:
        """Every decision about the job, by rule name."""
        rows = self._query("SELECT * FROM decisions WHERE job_uuid = ? ORDER BY rule", (job_uuid,))
        return [Decision.from_row(r) for r in rows]

    def record_match(self, job_uuid: str, rule: str, at: datetime) -> bool:
        """Record that the rule matches the job now.

        Returns True when this starts a match: the first one, or the first since it was cleared
        (a fresh grace period, which also resets `warned_at` so the new period is announced).
        """
        ts = to_db(at)
        with self._write() as conn:
            self._touch(conn, job_uuid, ts)
            cur = conn.execute(
                "INSERT INTO decisions (job_uuid, rule, first_match_at) VALUES (?, ?, ?) "
                "ON CONFLICT (job_uuid, rule) DO UPDATE SET first_match_at = excluded."
                "first_match_at, warned_at = NULL, cleared_at = NULL "
                "WHERE first_match_at IS NULL AND acted_at IS NULL",
                (job_uuid, rule, ts),
            )
            return cur.rowcount > 0

    def record_warned(self, job_uuid: str, rule: str, at: datetime) -> bool:
        """Record the warning of a match; True the first time for the current match only."""
        ts = to_db(at)
        with self._write() as conn:
            self._touch(conn, job_uuid, ts)
            cur = conn.execute(
                "INSERT INTO decisions (job_uuid, rule, first_match_at, warned_at) "
                "VALUES (?1, ?2, ?3, ?3) ON CONFLICT (job_uuid, rule) DO UPDATE SET "
                "warned_at = excluded.warned_at, "
                "first_match_at = coalesce(first_match_at, excluded.first_match_at) "
                "WHERE warned_at IS NULL",
                (job_uuid, rule, ts),
            )
            return cur.rowcount > 0

    def record_cleared(self, job_uuid: str, rule: str, at: datetime) -> bool:
        """Record that the job stopped violating the rule before it was acted on.

        Clears `first_match_at`, so a later match starts a fresh grace period. Returns True when
        an open match was cleared (then `job_cleared` is due), False otherwise.
        """
        ts = to_db(at)
        with self._write() as conn:
            self._touch(conn, job_uuid, ts)
            cur = conn.execute(
                "UPDATE decisions SET first_match_at = NULL, cleared_at = ? "
                "WHERE job_uuid = ? AND rule = ? AND first_match_at IS NOT NULL "
                "AND acted_at IS NULL",
                (ts, job_uuid, rule),
            )
            return cur.rowcount > 0

    def record_acted(self, job_uuid: str, rule: str, at: datetime, outcome: str) -> None:
        """Record the action taken on the job for the rule; the first `at` is kept, the outcome
        is updated (e.g. `requested`, then `cancelled`)."""
        ts = to_db(at)
        with self._write(durable=True) as conn:
            self._touch(conn, job_uuid, ts)
            conn.execute(
                "INSERT INTO decisions (job_uuid, rule, first_match_at, acted_at, outcome) "
                "VALUES (?1, ?2, ?3, ?3, ?4) ON CONFLICT (job_uuid, rule) DO UPDATE SET "
                "acted_at = coalesce(acted_at, excluded.acted_at), outcome = excluded.outcome",
                (job_uuid, rule, ts, outcome),
            )

    def open_matches(self) -> list[Decision]:
        """Decisions matched and neither acted on nor cleared, oldest match first."""
        rows = self._query(
            "SELECT * FROM decisions WHERE first_match_at IS NOT NULL AND acted_at IS NULL "
            "ORDER BY first_match_at, job_uuid, rule"
        )
        return [Decision.from_row(r) for r in rows]

    # -- cancels -----------------------------------------------------------------------------------

    def begin_cancel(self, job_uuid: str, rule: str, at: datetime, dry_run: bool = False) -> int:
        """Write (durably) the intent to cancel, before the cancel is sent; returns its id."""
        ts = to_db(at)
        with self._write(durable=True) as conn:
            self._touch(conn, job_uuid, ts)
            cur = conn.execute(
                "INSERT INTO cancels (job_uuid, rule, dry_run, outcome, begun_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (job_uuid, rule, int(dry_run), PENDING, ts),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def mark_cancel_sent(self, cancel_id: int, at: datetime) -> None:
        """Record that Tapis accepted the cancel request (the first time is kept).

        Raises:
            StateError: no cancel has this id.
        """
        with self._write(durable=True) as conn:
            cur = conn.execute(
                "UPDATE cancels SET sent_at = coalesce(sent_at, ?) WHERE id = ?",
                (to_db(at), cancel_id),
            )
            if cur.rowcount == 0:
                raise StateError(f"state store {self.path}: no cancel with id {cancel_id}")

    def finish_cancel(
        self,
        cancel_id: int,
        outcome: str,
        at: datetime,
        *,
        final_status: str | None = None,
        latency_s: float | None = None,
        detail: str | None = None,
    ) -> None:
        """Record the outcome of a cancel (`cancelled`, `unconfirmed`, `failed`, ...).

        Raises:
            StateError: no cancel has this id.
        """
        ts = to_db(at)
        with self._write(durable=True) as conn:
            cur = conn.execute(
                "UPDATE cancels SET outcome = ?, finished_at = ?, final_status = ?, "
                "latency_s = ?, detail = ? WHERE id = ? RETURNING job_uuid",
                (outcome, ts, final_status, latency_s, detail, cancel_id),
            )
            row = cur.fetchone()
            if row is None:
                raise StateError(f"state store {self.path}: no cancel with id {cancel_id}")
            self._touch(conn, row[0], ts)

    def begin_attempt(self, cancel_id: int, at: datetime) -> Attempt:
        """Write (durably) one cancel request of `cancel_id`, before it is sent.

        Raises:
            StateError: no cancel has this id.
        """
        with self._write(durable=True) as conn:
            try:
                return attempts.begin(conn, cancel_id, to_db(at))
            except LookupError as exc:
                raise StateError(f"state store {self.path}: {exc}") from None

    def mark_attempt_left(self, attempt_id: int, at: datetime) -> None:
        """Record (durably) that the attempt's request is being handed to the socket now.

        Called from the worker thread sending it, at the last moment before the bytes leave.
        """
        with self._write(durable=True) as conn:
            attempts.mark_left(conn, attempt_id, to_db(at))

    def answer_attempt(
        self, attempt_id: int, answer: str, at: datetime, detail: str | None = None
    ) -> None:
        """Record what came back for an attempt (see `state.attempts` for the answers)."""
        with self._write(durable=True) as conn:
            attempts.answer(conn, attempt_id, answer, to_db(at), detail)

    def attempts_for(self, job_uuid: str, rule: str) -> list[Attempt]:
        """Every cancel request written for (job, rule), oldest first."""
        rows = self._query(
            "SELECT * FROM cancel_attempts WHERE job_uuid = ? AND rule = ? ORDER BY id",
            (job_uuid, rule),
        )
        return [attempts.Attempt.from_row(r) for r in rows]

    def pending_cancels(self) -> list[CancelRecord]:
        """Cancels begun and not finished (intent only, or sent), oldest first."""
        rows = self._query("SELECT * FROM cancels WHERE finished_at IS NULL ORDER BY id")
        return [CancelRecord.from_row(r) for r in rows]

    def cancel_for(self, job_uuid: str, rule: str) -> CancelRecord | None:
        """The latest cancel of the job for the rule, or None."""
        rows = self._query(
            "SELECT * FROM cancels WHERE job_uuid = ? AND rule = ? ORDER BY id DESC LIMIT 1",
            (job_uuid, rule),
        )
        return CancelRecord.from_row(rows[0]) if rows else None

    def cancels_sent_since(self, at: datetime) -> int:
        """Real (not dry-run) cancels sent at or after `at`, for the rolling breaker window.

        An intent never marked sent nor finished counts too, at its begin time: the process may
        have died after sending it, and the breaker must err on the side of fewer cancels.
        """
        row = self._query_one(
            "SELECT count(*) FROM cancels WHERE dry_run = 0 AND "
            "(sent_at >= ?1 OR (sent_at IS NULL AND finished_at IS NULL AND begun_at >= ?1))",
            (to_db(at),),
        )
        return int(row[0])

    # -- small key-value state (breaker) -----------------------------------------------------------

    def set_meta(self, key: str, value: str | None) -> None:
        """Store a small value under `key` (None deletes it)."""
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        """The value stored under `key`, or None."""
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    # -- notifications -----------------------------------------------------------------------------

    def claim_notification(
        self, job_uuid: str | None, rule: str | None, event: str, at: datetime | None = None
    ) -> bool:
        """True exactly once per (job, rule, event), across restarts: the caller may notify."""
        ts = to_db(at or now_utc())
        with self._write() as conn:
            if job_uuid:
                self._touch(conn, job_uuid, ts)
            cur = conn.execute(
                "INSERT OR IGNORE INTO notifications (job_uuid, rule, event, claimed_at) "
                "VALUES (?, ?, ?, ?)",
                (job_uuid or "", rule or "", event, ts),
            )
            return cur.rowcount > 0

    # -- pruning -----------------------------------------------------------------------------------

    def prune(self, before: datetime) -> int:
        """Forget jobs last recorded before `before` (unless a cancel of theirs is pending), audit
        events older than `before` and silences that ended before it. Returns the rows removed."""
        ts = to_db(before)
        removed = 0
        stale = (
            "SELECT job_uuid FROM jobs WHERE last_seen_at < ?1 AND job_uuid NOT IN "
            "(SELECT job_uuid FROM cancels WHERE finished_at IS NULL)"
        )
        with self._write() as conn:
            # `jobs` goes last, so every table is pruned by the same set of jobs.
            for table in JOB_TABLES:
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE job_uuid IN ({stale})",  # noqa: S608
                    (ts,),
                ).rowcount
            removed += conn.execute("DELETE FROM events WHERE at < ?", (ts,)).rowcount
        return removed + self.prune_silences(before)
