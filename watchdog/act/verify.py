"""Verify a sent cancel: follow the job until Tapis shows it terminal, or give up and say so.

`CancelFollower` takes over once `actor.py` has sent a cancel (or found one recorded before a
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

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from watchdog.act.attempts import LIMIT, CancelPlan, send_cancel
from watchdog.durations import format_duration
from watchdog.errors import JobNotFoundError, TapisError, TapisUnavailableError
from watchdog.jobs import TERMINAL_STATUSES, Job, parse_job
from watchdog.state.attempts import NEVER_SENT

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from watchdog.config.model import SafetySettings
    from watchdog.events import EventLog
    from watchdog.state.attempts import Attempt
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

    def sent(
        self,
        followers: TaskGroup,
        cancel_id: int,
        job: Job,
        rule: str,
        reason: str,
        *,
        attempt: Attempt,
    ) -> None:
        """A first cancel reached Tapis (or may have): record it, log it, start following it."""
        self._record_sent(cancel_id, job.uuid, rule, attempt.written_at)
        self.events.job_cancel_requested(job, rule=rule, reason=reason, dry_run=False)
        self.following.add(job.uuid)
        followers.start_soon(self.follow, cancel_id, job, rule, reason)

    def _plan(self, cancel_id: int, job_uuid: str, rule: str) -> CancelPlan:
        """This cancel's sends, with the requests of every cancel of the (job, rule)."""
        chain = self.store.attempts_for(job_uuid, rule)
        record = self.store.cancel_for(job_uuid, rule)
        legacy = record.sent_at if record is not None and record.id == cancel_id else None
        own = CancelPlan.of([a for a in chain if a.cancel_id == cancel_id], legacy_sent_at=legacy)
        others = CancelPlan.of([a for a in chain if a.cancel_id != cancel_id])
        return CancelPlan(own.first_sent_at, own.requests + others.requests, own.last_sent_at)

    async def follow(self, cancel_id: int, job: Job, rule: str, reason: str) -> None:
        """Follow a cancelled job until it is terminal or `verify_timeout` passes.

        Everything is read from the cancel's attempts in the store, so a restarted daemon does
        what the one that sent the cancel would have: time counts from the first attempt that
        may have reached Tapis, the one re-send goes out `resend_after` after it, and a cancel
        recorded only as an intent (or whose every attempt provably never left) is sent now,
        after a fresh status check, with `verify_timeout` counting from the start of following.
        """
        started = datetime.now(UTC)
        plan = self._plan(cancel_id, job.uuid, rule)
        wait = 0.5
        status: str | None = None
        try:
            while True:
                if plan.first_sent_at is None:
                    await self._send_intent(cancel_id, job, rule, reason)
                    plan = self._plan(cancel_id, job.uuid, rule)
                status = await self._status(job.uuid)
                if status in TERMINAL_STATUSES:
                    sent_at = plan.first_sent_at or started
                    self._confirmed(cancel_id, job, rule, reason, sent_at=sent_at, status=status)
                    return
                now = datetime.now(UTC)
                resend_after = self.policy.resend_after
                due = plan.resend_due(resend_after)
                # The one re-send is owed even past the deadline: a daemon that was down when it
                # was due sends it when it is back, and follows it for the time it had left.
                if due is not None and now >= due and status is not None:
                    wait = 0.5  # a re-sent cancel lands like a first one: look again soon
                    if await self._resend(cancel_id, job, rule, reason, status):
                        plan = self._plan(cancel_id, job.uuid, rule)
                        continue
                    due = None  # provably not sent: try again after the usual wait
                deadline = plan.deadline(started, self.policy.safety.verify_timeout, resend_after)
                if now >= deadline:
                    break
                next_check = min(now + timedelta(seconds=wait), deadline)
                if due is not None:
                    next_check = min(next_check, max(due, now))
                await anyio.sleep(max(0.0, (next_check - now).total_seconds()))
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

    async def _status(self, job_uuid: str) -> str | None:
        """The job's status, or None when Tapis cannot say now (keep following)."""
        try:
            return await self.client.get_status(job_uuid)
        except (JobNotFoundError, TapisUnavailableError):
            return None

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
        latency = max(0.0, (at - sent_at).total_seconds())
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
        """Send the cancel once more. True when this used up the re-send (or it is gone)."""
        outcome = await send_cancel(self.client, self.store, cancel_id, job.uuid, rule)
        if outcome.answer == LIMIT:
            return True
        if not outcome.maybe_received or outcome.attempt is None:
            # Refused, terminal (the next status check confirms it), or provably never sent:
            # only the last may be sent again, and then the plan still says so.
            return outcome.answer != NEVER_SENT
        lost = "" if outcome.error is None else f" (the answer was lost: {outcome.error.detail})"
        self.events.job_cancel_requested(
            _with_status(job, status),
            rule=rule,
            reason=f"{reason}; still {status}, cancel sent again{lost}",
            dry_run=False,
            attempt=2,
        )
        return True

    async def _send_intent(self, cancel_id: int, job: Job, rule: str, reason: str) -> None:
        """Send a cancel recorded only as an intent, after a fresh status check.

        Sends nothing when the job is terminal or its status cannot be read now (the follow loop
        looks again and tries once more).
        """
        try:
            status = await self.client.get_status(job.uuid)
        except TapisError:
            return  # logged by the client
        if status in TERMINAL_STATUSES:
            return
        outcome = await send_cancel(self.client, self.store, cancel_id, job.uuid, rule)
        if not outcome.maybe_received or outcome.attempt is None:
            return
        self._record_sent(cancel_id, job.uuid, rule, outcome.attempt.written_at)
        lost = "" if outcome.error is None else f" (the answer was lost: {outcome.error.detail})"
        self.events.job_cancel_requested(
            _with_status(job, status), rule=rule, reason=f"{reason}; sent now{lost}", dry_run=False
        )

    def _record_sent(self, cancel_id: int, job_uuid: str, rule: str, at: datetime) -> None:
        """The cancel (may have) reached Tapis: the intent is sent and the decision is acted."""
        self.store.mark_cancel_sent(cancel_id, at)
        self.store.record_acted(job_uuid, rule, at, "requested")

    async def resume_pending(self, followers: TaskGroup) -> None:
        """After a restart: follow cancels that were sent (or may have been) but not confirmed."""
        for record in self.store.pending_cancels():
            job = await self._job_for(record.job_uuid)
            if job is None:
                continue
            plan = self._plan(record.id, record.job_uuid, record.rule)
            decision = self.store.decision(record.job_uuid, record.rule)
            reason = (
                "cancel sent before a restart"
                if plan.first_sent_at is not None
                else "cancel decided before a restart"
            )
            if decision is not None and decision.outcome:
                reason = f"{reason} ({decision.outcome})"
            if plan.first_sent_at is not None and (decision is None or decision.acted_at is None):
                # Stopped between sending and recording the send: close the decision (and the
                # intent) as of the attempt, so the rule never starts a second cancel for it.
                self._record_sent(record.id, record.job_uuid, record.rule, plan.first_sent_at)
            self.following.add(job.uuid)
            followers.start_soon(partial(self.follow, record.id, job, record.rule, reason))

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
