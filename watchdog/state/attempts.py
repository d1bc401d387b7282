"""Cancel attempts: each `cancelJob` request of a cancel, written before it is sent.

A cancel (one row of `cancels`, one per job and rule that acts) is sent at most twice: the first
send and the one deliberate re-send `resend_after` later. Each send is an attempt, written durably
before the request is built, marked durably as *left* at the last moment before its bytes are
handed to the socket (`left_at`), and given its answer when one comes back:

    accepted      Tapis answered 200 with a cancel envelope
    lost          no usable answer, but Tapis may have acted (timeout, reset, garbled or empty 200)
    never_sent    the connection was never made (refused, connect timeout): Tapis cannot have it
    terminal      409, the job had already ended
    refused       any other refusal (401, 403, 404, 400)
    (no answer)   the daemon stopped: with `left_at`, while the request was out (it may have
                  reached Tapis); without, before it left (it cannot have)

An attempt `accepted`, `lost`, or left and unanswered may have reached Tapis; those are the ones
counted against the limit of two and followed as sent from the moment they were written, whatever
restarts came between. The others count for nothing: such a cancel is simply sent again.
"""

from __future__ import annotations

import sqlite3  # noqa: TC003 - the connection is passed in by the store
from dataclasses import dataclass
from datetime import datetime  # noqa: TC003 - a field type of Attempt

from watchdog.state.schema import from_db

__all__ = ["MAX_REQUESTS", "MAYBE_RECEIVED", "Attempt", "answer", "begin", "mark_left"]

MAX_REQUESTS = 2
"""The most cancel requests that may reach Tapis for one (job, rule) decision."""
ACCEPTED = "accepted"
LOST = "lost"
NEVER_SENT = "never_sent"
TERMINAL = "terminal"
REFUSED = "refused"
MAYBE_RECEIVED = frozenset({ACCEPTED, LOST})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One cancel request: written before it went out, answered when (if) an answer came."""

    id: int
    cancel_id: int
    job_uuid: str
    rule: str
    written_at: datetime
    answered_at: datetime | None
    answer: str | None
    detail: str | None
    left_at: datetime | None = None

    @property
    def maybe_received(self) -> bool:
        """Whether Tapis may have this request: accepted, answer lost, or left and unanswered."""
        if self.answer is None:
            return self.left_at is not None
        return self.answer in MAYBE_RECEIVED

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Attempt:
        written_at = from_db(row["written_at"])
        assert written_at is not None
        return cls(
            id=row["id"],
            cancel_id=row["cancel_id"],
            job_uuid=row["job_uuid"],
            rule=row["rule"],
            written_at=written_at,
            answered_at=from_db(row["answered_at"]),
            answer=row["answer"],
            detail=row["detail"],
            left_at=from_db(row["left_at"]),
        )


def begin(conn: sqlite3.Connection, cancel_id: int, written_at: int) -> Attempt:
    """Insert an attempt of `cancel_id` (inside the caller's durable transaction)."""
    row = conn.execute(
        "INSERT INTO cancel_attempts (cancel_id, job_uuid, rule, written_at) "
        "SELECT id, job_uuid, rule, ?1 FROM cancels WHERE id = ?2 RETURNING *",
        (written_at, cancel_id),
    ).fetchone()
    if row is None:
        msg = f"no cancel with id {cancel_id}"
        raise LookupError(msg)
    return Attempt.from_row(row)


def answer(
    conn: sqlite3.Connection, attempt_id: int, what: str, at: int, detail: str | None
) -> None:
    """Record the answer of an attempt (the first answer is kept)."""
    conn.execute(
        "UPDATE cancel_attempts SET answer = ?1, answered_at = ?2, detail = ?3 "
        "WHERE id = ?4 AND answer IS NULL",
        (what, at, detail, attempt_id),
    )


def mark_left(conn: sqlite3.Connection, attempt_id: int, at: int) -> None:
    """Record that the attempt's request is leaving (the first time is kept)."""
    conn.execute(
        "UPDATE cancel_attempts SET left_at = coalesce(left_at, ?1) WHERE id = ?2",
        (at, attempt_id),
    )
