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

    @classmethod
    def of(cls, attempts: Sequence[Attempt], *, legacy_sent_at: datetime | None = None) -> Self:
        """Read a cancel's attempts. `legacy_sent_at`: a send recorded before attempts were kept
        (a store written by an older version), counted as one request."""
        sent = [a for a in attempts if a.maybe_received]
        if not sent and legacy_sent_at is not None:
            return cls(first_sent_at=legacy_sent_at, requests=1)
        return cls(first_sent_at=sent[0].written_at if sent else None, requests=len(sent))

    @property
    def resend_left(self) -> bool:
        return self.requests < MAX_REQUESTS

    def resend_due(self, resend_after: float) -> datetime | None:
        """When the one re-send is due (None: not sent yet, or no re-send is left)."""
        if self.first_sent_at is None or not self.resend_left:
            return None
        return self.first_sent_at + timedelta(seconds=resend_after)


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
    try:
        await client.cancel_job(job_uuid)
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
