"""Send one cancel request so that a crash at any moment can neither lose nor repeat it.

`send_cancel` writes the attempt to the state store (durably) before `cancelJob` goes out and
records the answer after; `CancelPlan` reads a cancel's attempts back and says what following
must do, the same way in the daemon that sent it and in one that restarted after a SIGKILL:

- an attempt that may have reached Tapis (accepted, answer lost, or never answered because the
  daemon died) counts as sent from the moment it was written;
- the one deliberate re-send is due `resend_after` after the first such attempt, and no (job,
  rule) decision ever gets more than `MAX_REQUESTS` requests that may have reached Tapis;
- an attempt that provably never left (connection refused, connect timeout) counts for nothing:
  the cancel is sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Self

from watchdog.errors import (
    JobNotAuthorizedError,
    JobTerminalError,
    TapisAuthError,
    TapisError,
    TapisUnavailableError,
)
from watchdog.state.attempts import (
    ACCEPTED,
    LOST,
    MAX_REQUESTS,
    NEVER_SENT,
    REFUSED,
    TERMINAL,
    Attempt,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from watchdog.state.store import StateStore
    from watchdog.tapis.client import TapisClient


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one cancel request came to. `error` is set for every answer but `accepted`."""

    answer: str
    """`accepted`, `lost`, `never_sent`, `terminal`, `refused`, or `limit` (nothing was sent:
    the decision has had its two requests)."""
    attempt: Attempt | None
    error: TapisError | None = None

    @property
    def maybe_received(self) -> bool:
        """Tapis may have this request: it is followed as sent."""
        return self.answer in {ACCEPTED, LOST}


LIMIT = "limit"


@dataclass(frozen=True, slots=True)
class CancelPlan:
    """What the attempts of a (job, rule) say: when it was first sent, whether a re-send is left."""

    first_sent_at: datetime | None
    """When the first attempt that may have reached Tapis was written (None: none did)."""
    requests: int
    """Attempts that may have reached Tapis."""
    last_sent_at: datetime | None = None
    """When the latest of them was written."""

    @classmethod
    def of(cls, attempts: Sequence[Attempt], *, legacy_sent_at: datetime | None = None) -> Self:
        """Read a cancel's attempts. `legacy_sent_at`: the cancel's recorded send; one earlier
        than every attempt was made before attempts were kept (a store written by an older
        version) and counts as one more request."""
        times = [a.written_at for a in attempts if a.maybe_received]
        if legacy_sent_at is not None and (not times or legacy_sent_at < times[0]):
            times.insert(0, legacy_sent_at)
        if not times:
            return cls(first_sent_at=None, requests=0)
        return cls(times[0], len(times), times[-1])

    @property
    def resend_left(self) -> bool:
        return self.requests < MAX_REQUESTS

    def resend_due(self, resend_after: float) -> datetime | None:
        """When the one re-send is due (None: not sent yet, or no re-send is left)."""
        if self.first_sent_at is None or not self.resend_left:
            return None
        return self.first_sent_at + timedelta(seconds=resend_after)

    def deadline(
        self, started: datetime, verify_timeout: timedelta, resend_after: float
    ) -> datetime:
        """When following gives up: `verify_timeout` after the first send, or, for a re-send
        that went out late (the daemon was down when it was due), the time it would have had
        left: `verify_timeout - resend_after` after it. `started` stands in for an unsent cancel.
        """
        first = self.first_sent_at or started
        deadline = first + verify_timeout
        if self.requests > 1 and self.last_sent_at is not None:
            late = self.last_sent_at + verify_timeout - timedelta(seconds=resend_after)
            deadline = max(deadline, late)
        return deadline


async def send_cancel(
    client: TapisClient, store: StateStore, cancel_id: int, job_uuid: str, rule: str
) -> SendOutcome:
    """Write the attempt, send `cancelJob`, record the answer. Never sends a third request.

    Raises:
        TapisAuthError: the identity cannot log in any more (recorded as refused first).
    """
    if not CancelPlan.of(store.attempts_for(job_uuid, rule)).resend_left:
        return SendOutcome(LIMIT, None)
    attempt = store.begin_attempt(cancel_id, datetime.now(UTC))

    def leaving() -> None:
        store.mark_attempt_left(attempt.id, datetime.now(UTC))

    try:
        await client.cancel_job(job_uuid, before_send=leaving)
    except (JobTerminalError, JobNotAuthorizedError, TapisAuthError) as exc:
        answer = TERMINAL if isinstance(exc, JobTerminalError) else REFUSED
        store.answer_attempt(attempt.id, answer, datetime.now(UTC), exc.detail)
        if isinstance(exc, TapisAuthError):
            raise
        return SendOutcome(answer, attempt, exc)
    except TapisUnavailableError as exc:
        answer = LOST if exc.maybe_received else NEVER_SENT
        store.answer_attempt(attempt.id, answer, datetime.now(UTC), exc.detail)
        return SendOutcome(answer, attempt, exc)
    except TapisError as exc:
        store.answer_attempt(attempt.id, REFUSED, datetime.now(UTC), exc.detail)
        return SendOutcome(REFUSED, attempt, exc)
    store.answer_attempt(attempt.id, ACCEPTED, datetime.now(UTC))
    return SendOutcome(ACCEPTED, attempt)
