"""Verify a sent cancel: follow the job until Tapis shows it terminal, or give up and say so.

`CancelFollower` takes over once `actions.py` has sent a cancel (or found one recorded before a
restart):

- the job's status is checked with a doubling wait (capped at `follow_max_interval`) until it is
  terminal (`job_cancelled`, with the latency from the send) or `verify_timeout` after the send
  passes (`job_cancel_unconfirmed`);
- a job still active `resend_after` after the send gets the cancel once more (`job_cancel_requested`
  with `attempt=2`); that is the one re-send a cancel ever gets;
- after a restart, `resume_pending` follows every cancel that was sent, or only decided, but never
  confirmed; a cancel that may never have left is sent at once after a fresh status check.

The follower reads `safety`, `resend_after` and `follow_max_interval` from its policy (the `Actor`)
when it uses them, never from copies, so what a reload sets on the actor applies to following too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from watchdog.durations import format_duration
from watchdog.errors import (
    JobNotFoundError,
    JobTerminalError,
    TapisError,
    TapisUnavailableError,
)
from watchdog.jobs import TERMINAL_STATUSES, Job, parse_job

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from watchdog.config.model import SafetySettings
    from watchdog.events import EventLog
    from watchdog.state.store import StateStore
    from watchdog.tapis.client import TapisClient


class FollowPolicy(Protocol):
    """The settings following reads, each time it uses them (a reload may have changed them)."""

    @property
    def safety(self) -> SafetySettings: ...
    @property
    def resend_after(self) -> float: ...
    @property
    def follow_max_interval(self) -> float: ...


@dataclass
class CancelFollower:
    """Follows sent cancels until they are terminal; knows which jobs it is following."""

    client: TapisClient
    store: StateStore
    events: EventLog
    policy: FollowPolicy
    following: set[str] = field(default_factory=set)

    def sent(self, followers: TaskGroup, cancel_id: int, job: Job, rule: str, reason: str) -> None:
        """A first cancel reached Tapis (or may have): record it, log it, start following it."""
        sent_at = self._record_sent(cancel_id, job.uuid, rule)
        self.events.job_cancel_requested(job, rule=rule, reason=reason, dry_run=False)
        self.following.add(job.uuid)
        followers.start_soon(self.follow, cancel_id, job, rule, reason, sent_at)

    async def follow(  # noqa: C901 - one loop: status, confirm, deadline, one re-send
        self,
        cancel_id: int,
        job: Job,
        rule: str,
        reason: str,
        sent_at: datetime,
        *,
        maybe_unsent: bool = False,
    ) -> None:
        """Follow a cancelled job until it is terminal or `verify_timeout` passes.

        `maybe_unsent`: the cancel was recorded as an intent but the daemon stopped before it
        recorded sending it; if the job is still active, the cancel is sent (again) at once, and
        `verify_timeout` counts from then.
        """
        if maybe_unsent:
            sent = await self._send_intent(cancel_id, job, rule, reason)
            if sent is not None:
                sent_at, maybe_unsent = sent, False
        start = time.monotonic()
        # An intent that may never have gone out has not been waiting for Tapis: its time
        # to be confirmed starts now, not when the stopped daemon wrote it.
        elapsed_before = (
            0.0 if maybe_unsent else max(0.0, (datetime.now(UTC) - sent_at).total_seconds())
        )
        resend_after = self.policy.resend_after
        verify_timeout = self.policy.safety.verify_timeout.total_seconds()
        deadline = start + max(0.0, verify_timeout - elapsed_before)
        resend_at = start if maybe_unsent else start + max(0.0, resend_after - elapsed_before)
        resent = not maybe_unsent and elapsed_before >= resend_after
        wait = 0.5
        status: str | None = None
        try:
            while True:
                try:
                    status = await self.client.get_status(job.uuid)
                except JobNotFoundError:
                    status = None
                except TapisUnavailableError:
                    status = None  # keep following: Tapis may be back before the deadline
                if status in TERMINAL_STATUSES:
                    self._confirmed(cancel_id, job, rule, reason, sent_at=sent_at, status=status)
                    return
                mono = time.monotonic()
                if mono >= deadline:
                    break
                if not resent and mono >= resend_at and status is not None:
                    resent = True
                    wait = 0.5  # a re-sent cancel lands like a first one: look again soon
                    if not await self._resend(cancel_id, job, rule, reason, status):
                        continue  # ended meanwhile: the next status check confirms it
                mono = time.monotonic()
                next_check = min(mono + wait, deadline)
                if not resent:
                    next_check = min(next_check, resend_at)
                await anyio.sleep(max(0.0, next_check - mono))
                wait = min(wait * 2, self.policy.follow_max_interval)
            self.store.finish_cancel(
                cancel_id, "unconfirmed", datetime.now(UTC), final_status=status
            )
            self.events.job_cancel_unconfirmed(
                _with_status(job, status or job.status),
                rule=rule,
                reason=f"{reason}; still {status or 'unknown'} "
                f"{format_duration(self.policy.safety.verify_timeout)} after the cancel",
                dry_run=False,
            )
        finally:
            self.following.discard(job.uuid)

    def _confirmed(
        self,
        cancel_id: int,
        job: Job,
        rule: str,
        reason: str,
        *,
        sent_at: datetime,
        status: str,
    ) -> None:
        at = datetime.now(UTC)
        latency = (at - sent_at).total_seconds()
        self.store.finish_cancel(cancel_id, "cancelled", at, final_status=status, latency_s=latency)
        self.events.job_cancelled(
            _with_status(job, status),
            rule=rule,
            reason=reason,
            final_status=status,
            latency_s=round(latency, 3),
            dry_run=False,
        )

    async def _resend(self, cancel_id: int, job: Job, rule: str, reason: str, status: str) -> bool:
        """Send the cancel once more. False when Tapis says the job has ended meanwhile."""
        try:
            await self.client.cancel_job(job.uuid)
        except JobTerminalError:
            return False
        except TapisError:
            return True  # logged by the client; keep following
        self._record_sent(cancel_id, job.uuid, rule)
        self.events.job_cancel_requested(
            _with_status(job, status),
            rule=rule,
            reason=f"{reason}; still {status}, cancel sent again",
            dry_run=False,
            attempt=2,
        )
        return True

    async def _send_intent(
        self, cancel_id: int, job: Job, rule: str, reason: str
    ) -> datetime | None:
        """Send a cancel recorded only as an intent, after a fresh status check.

        Returns when it was sent, or None when it was not: the job is terminal, or Tapis could
        not say or refused (the follow loop then looks again, and tries once more).
        """
        try:
            status = await self.client.get_status(job.uuid)
            if status in TERMINAL_STATUSES:
                return None
            await self.client.cancel_job(job.uuid)
        except TapisError:
            return None  # logged by the client
        sent_at = self._record_sent(cancel_id, job.uuid, rule)
        self.events.job_cancel_requested(
            _with_status(job, status), rule=rule, reason=f"{reason}; sent now", dry_run=False
        )
        return sent_at

    def _record_sent(self, cancel_id: int, job_uuid: str, rule: str) -> datetime:
        """The cancel reached Tapis: the intent is sent and the (job, rule) decision is acted."""
        at = datetime.now(UTC)
        self.store.mark_cancel_sent(cancel_id, at)
        self.store.record_acted(job_uuid, rule, at, "requested")
        return at

    async def resume_pending(self, followers: TaskGroup) -> None:
        """After a restart: follow cancels that were sent (or may have been) but not confirmed."""
        for record in self.store.pending_cancels():
            job = await self._job_for(record.job_uuid)
            if job is None:
                continue
            decision = self.store.decision(record.job_uuid, record.rule)
            reason = (
                "cancel sent before a restart"
                if record.sent_at is not None
                else "cancel decided before a restart"
            )
            if decision is not None and decision.outcome:
                reason = f"{reason} ({decision.outcome})"
            if record.sent_at is not None and (decision is None or decision.acted_at is None):
                # Stopped between recording the send and the decision: close the decision, so
                # the rule never sends this job a second cancel.
                self.store.record_acted(record.job_uuid, record.rule, record.sent_at, "requested")
            sent_at = record.sent_at or record.begun_at
            self.following.add(job.uuid)
            followers.start_soon(
                partial(
                    self.follow,
                    record.id,
                    job,
                    record.rule,
                    reason,
                    sent_at,
                    maybe_unsent=record.sent_at is None,
                )
            )

    async def _job_for(self, job_uuid: str) -> Job | None:
        try:
            record: dict[str, Any] = await self.client.get_job(job_uuid)
            return parse_job(record)
        except TapisError:
            return None
        except Exception:  # a malformed record must not stop the daemon
            return None


def _with_status(job: Job, status: str) -> Job:
    return replace(job, status=status)
