"""Decide and act: grace, the first acting rule, exemptions, dry run, the breaker, verified cancels.

Per poll, `Actor.handle_poll` turns every job's verdicts into at most one action:

- each matching (job, rule) is recorded once (`rule_matched`); a `warn` rule, or a rule whose grace
  period has started, warns once (`job_warned` and a Tapis `sendEvent` into the job's history);
- a warned match that stops matching before it acted is cleared (`job_cleared`);
- the first matching `cancel` rule in file order whose grace has ended wins; per-rule dry-run rules
  log what they would have done but never take the place of a rule that really acts;
- exempt jobs, dry run, an open circuit breaker (`breaker.py`) and a job found terminal in the
  fresh status check right before the cancel each skip the cancel with `job_cancel_skipped`;
- a cancel is written to the state store as an intent before it is sent, then handed to
  `verify.CancelFollower`, which follows it until the job is terminal (`job_cancelled`) or
  `verify_timeout` passes (`job_cancel_unconfirmed`), re-sending it once if the job is still active
  after `resend_after`; a cancel that failed because Tapis was unavailable is tried again on the
  next poll, any other refusal is final.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio

from watchdog.act.breaker import allowed_cancels
from watchdog.act.verify import CancelFollower
from watchdog.errors import (
    JobNotAuthorizedError,
    JobNotFoundError,
    JobRecordError,
    JobTerminalError,
    TapisError,
    TapisUnavailableError,
)
from watchdog.jobs import TERMINAL_STATUSES, Job, parse_job, status_entered_from_history
from watchdog.rules.evaluate import Verdict, evaluate_matches, needs_status_since
from watchdog.rules.plan import is_exempt, plan

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskGroup

    from watchdog.config.model import SafetySettings
    from watchdog.events import EventLog
    from watchdog.rules.evaluate import CompiledRule
    from watchdog.state.schema import Decision
    from watchdog.state.store import StateStore
    from watchdog.tapis.client import TapisClient

# Outcomes that are a state of the configuration or of Tapis, not a decision: once the
# configuration changes (dry run off, breaker closed, exemption removed), or Tapis is back after a
# cancel failed for want of it, the rule may act after all.
UNAVAILABLE = "unavailable"
TRANSIENT_OUTCOMES = frozenset({"dry_run", "circuit_open", "exempt", UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll decided: counts for `poll_completed`."""

    matches: int
    cancels: int


@dataclass(slots=True)
class _Candidate:
    job: Job
    verdict: Verdict


@dataclass
class Actor:
    """Holds what acting needs; one per daemon, rebuilt pieces on reload."""

    client: TapisClient
    store: StateStore
    events: EventLog
    safety: SafetySettings
    dry_run: bool = False
    resend_after: float = 60.0
    follow_max_interval: float = 30.0
    _follower: CancelFollower = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # The follower reads safety, resend_after and follow_max_interval from this actor when
        # it uses them, so what a reload sets here applies to following too.
        self._follower = CancelFollower(self.client, self.store, self.events, policy=self)

    # ------------------------------------------------------------------ per poll
    async def handle_poll(
        self,
        jobs: Sequence[Job],
        rules: Sequence[CompiledRule],
        now: datetime,
        followers: TaskGroup,
    ) -> PollOutcome:
        """Evaluate every job, record and log decisions, and start the cancels that are due.

        Cancels are sent before this returns; following them until they are terminal runs in
        `followers`, so the caller decides how long to wait for confirmations.
        """
        self.store.observe_jobs({job.uuid: job.status for job in jobs}, now)
        since = await self._status_since_all(jobs, rules, now)
        matches = 0
        candidates: list[_Candidate] = []
        shadows: list[_Candidate] = []
        seen_rules: dict[str, set[str]] = {}
        for job in jobs:
            # Only what matched is explained: plan needs nothing else.
            matched = evaluate_matches(job, rules, now, since.get(job.uuid))
            seen_rules[job.uuid] = {v.rule for v in matched}
            matches += len(matched)
            if not matched:
                continue
            first_match = self._record_matches(job, matched, now)
            decided = plan(matched, first_match, now, exempt=is_exempt(job, self.safety.exempt))
            for step in decided.steps:
                if step.kind == "warn":
                    await self._warn(job, step.verdict, now, step.verdict.reason)
                elif step.kind == "grace" and step.grace_until is not None:
                    reason = (
                        f"{step.verdict.reason}; cancel at "
                        f"{step.grace_until:%Y-%m-%dT%H:%M:%SZ} if still violating"
                    )
                    await self._warn(job, step.verdict, now, reason)
                elif step.kind == "shadow":
                    shadows.append(_Candidate(job, step.verdict))
                elif step.kind == "cancel":
                    candidates.append(_Candidate(job, step.verdict))
        await self._clear_stale(jobs, seen_rules, now, {r.name for r in rules if r.dry_run})
        for shadow in shadows:
            self._skip_once(shadow, "dry_run", now)
        cancels = await self._act(candidates, now, followers)
        return PollOutcome(matches=matches, cancels=cancels)

    async def _status_since_all(
        self, jobs: Sequence[Job], rules: Sequence[CompiledRule], now: datetime
    ) -> dict[str, datetime]:
        """Entry times into the current status for jobs whose verdict could depend on it."""
        result: dict[str, datetime] = {}
        to_fetch: list[Job] = []
        for job in jobs:
            if job.status in {"RUNNING", "QUEUED"}:
                continue
            known = self.store.status_entry(job.uuid, job.status)
            if known is not None:
                result[job.uuid] = known
            elif needs_status_since(job, rules, now):
                to_fetch.append(job)

        async def fetch(job: Job) -> None:
            try:
                history = await self.client.get_history(job.uuid)
                entered = status_entered_from_history(history, job.status)
            except (TapisError, JobRecordError):
                return  # unknown this poll: the condition does not hold; try again next poll
            if entered is None:
                # No status change into it on record: the job has been in it since it was
                # first seen here, which never overstates the time.
                entered = now
            self.store.record_status_entry(job.uuid, job.status, entered)
            result[job.uuid] = entered

        async with anyio.create_task_group() as tg:
            for job in to_fetch:
                tg.start_soon(fetch, job)
        return result

    def _record_matches(
        self, job: Job, matched: Sequence[Verdict], now: datetime
    ) -> dict[str, datetime]:
        """Record each match (`rule_matched` the first time); return when each rule's grace
        period started.

        A live rule's grace starts with the warning that reached Tapis; a rule not yet warned
        for real (it matched while in dry run) starts its grace now, with that warning. A dry
        rule's grace starts at its first match.
        """
        grace_start: dict[str, datetime] = {}
        for verdict in matched:
            dry = self.dry_run or verdict.dry_run
            if self.store.record_match(job.uuid, verdict.rule, now):
                self.events.rule_matched(job, rule=verdict.rule, reason=verdict.reason, dry_run=dry)
            decision = self.store.decision(job.uuid, verdict.rule)
            if decision is None or decision.first_match_at is None:
                continue
            if dry:
                grace_start[verdict.rule] = decision.first_match_at
            elif decision.warned_at is not None:
                grace_start[verdict.rule] = decision.warned_at
        return grace_start

    async def _warn(self, job: Job, verdict: Verdict, now: datetime, reason: str) -> None:
        """Warn once per (job, rule): `job_warned` and a note in the job's Tapis history.

        In dry run only `job_warned` is logged, once per match; it is not the decision's
        warning, so a rule that goes live warns for real before it acts.
        """
        if self.dry_run or verdict.dry_run:
            decision = self.store.decision(job.uuid, verdict.rule)
            if decision is None or decision.first_match_at is None or decision.warned_at:
                return
            key = _dry_warning_key(decision.first_match_at)
            if self.store.claim_notification(job.uuid, verdict.rule, key, now):
                self.events.job_warned(job, rule=verdict.rule, reason=reason, dry_run=True)
            return
        if not self.store.record_warned(job.uuid, verdict.rule, now):
            return
        self.events.job_warned(job, rule=verdict.rule, reason=reason, dry_run=False)
        # A failed sendEvent is logged by the client; a warning never blocks a decision.
        with contextlib.suppress(TapisError):
            await self.client.send_event(
                job.uuid,
                f"tapis-watchdog: rule {verdict.rule}: {reason}",
                "WATCHDOG_WARNING",
            )

    async def _clear_stale(
        self,
        jobs: Sequence[Job],
        seen_rules: dict[str, set[str]],
        now: datetime,
        dry_rules: set[str],
    ) -> None:
        """Matches that did not hold this poll are cleared.

        The poll saw every watched job whole, so a job it did not see has left the watched
        statuses (usually: it ended on its own during a grace period). Such a job is looked up
        once, for its `job_cleared`, and only when its match had been warned about.
        """
        by_uuid = {job.uuid: job for job in jobs}
        for decision in self.store.open_matches():
            uuid, rule = decision.job_uuid, decision.rule
            job = by_uuid.get(uuid)
            if job is not None and rule in seen_rules.get(uuid, set()):
                continue
            dry = self.dry_run or rule in dry_rules
            warned = decision.warned_at is not None
            if not warned and dry and decision.first_match_at is not None:
                # The claim is taken only if the dry-run warning of this match was never logged
                # (the match is over, so its key is never used again): False means it was.
                key = _dry_warning_key(decision.first_match_at)
                warned = not self.store.claim_notification(uuid, rule, key, now)
            reason = f"no longer matches rule {rule}"
            if job is None and warned:
                job = await self._gone_job(decision)
                if job is None:
                    continue  # not found now: the next poll tries again
                reason = f"job is {job.status}, no longer watched; rule {rule} is over"
            self.store.record_cleared(uuid, rule, now)
            if warned and job is not None:
                self.events.job_cleared(job, rule=rule, reason=reason, dry_run=dry)

    async def _gone_job(self, decision: Decision) -> Job | None:
        """The current record of a job the poll no longer lists (for its `job_cleared`)."""
        try:
            return parse_job(await self.client.get_job(decision.job_uuid))
        except JobNotFoundError:
            # Tapis no longer knows it: nothing to tell anyone, nothing to keep.
            self.store.record_cleared(decision.job_uuid, decision.rule, datetime.now(UTC))
            return None
        except (TapisError, JobRecordError):
            return None  # Tapis trouble must not lose the event: the next poll tries again

    # ------------------------------------------------------------------ acting
    def _skip_once(self, cand: _Candidate, why: str, now: datetime) -> None:
        decision = self.store.decision(cand.job.uuid, cand.verdict.rule)
        if decision is not None and decision.outcome == why:
            return
        self.store.record_acted(cand.job.uuid, cand.verdict.rule, now, why)
        self.events.job_cancel_skipped(
            cand.job,
            rule=cand.verdict.rule,
            reason=cand.verdict.reason,
            why=why,
            dry_run=why == "dry_run" or self.dry_run or cand.verdict.dry_run,
        )

    def _already_done(self, cand: _Candidate) -> bool:
        decision = self.store.decision(cand.job.uuid, cand.verdict.rule)
        if (
            decision is not None
            and decision.acted_at is not None
            and decision.outcome not in TRANSIENT_OUTCOMES
        ):
            return True
        return cand.job.uuid in self._follower.following

    async def _act(
        self, candidates: Sequence[_Candidate], now: datetime, followers: TaskGroup
    ) -> int:
        due: list[_Candidate] = []
        for cand in candidates:
            if self._already_done(cand):
                continue
            if is_exempt(cand.job, self.safety.exempt):
                self._skip_once(cand, "exempt", now)
            elif self.dry_run:
                self._skip_once(cand, "dry_run", now)
            else:
                due.append(cand)
        allowed = allowed_cancels(
            len(due), now, safety=self.safety, store=self.store, events=self.events
        )
        for cand in due[allowed:]:
            self._skip_once(cand, "circuit_open", now)
        sent = 0

        async def one(cand: _Candidate) -> None:
            nonlocal sent
            if await self._cancel(cand, followers):
                sent += 1

        async with anyio.create_task_group() as tg:
            for cand in due[:allowed]:
                tg.start_soon(one, cand)
        return sent

    async def _cancel(  # noqa: PLR0911 - one exit per outcome of the seed's flow
        self, cand: _Candidate, followers: TaskGroup
    ) -> bool:
        """Fresh status check, then cancelJob. True when the cancel was sent."""
        job, verdict = cand.job, cand.verdict
        now = datetime.now(UTC)
        cancel_id = self.store.begin_cancel(job.uuid, verdict.rule, now)
        try:
            status = await self.client.get_status(job.uuid)
            if status in TERMINAL_STATUSES:
                terminal = JobTerminalError("getJobStatus", f"job is {status}", job_uuid=job.uuid)
                self._refused(cancel_id, cand, "already_terminal", terminal)
                return False
            await self.client.cancel_job(job.uuid)
        except JobTerminalError as exc:
            self._refused(cancel_id, cand, "already_terminal", exc)
            return False
        except JobNotAuthorizedError as exc:
            self._refused(cancel_id, cand, "not_authorized", exc)
            return False
        except TapisUnavailableError as exc:
            if not exc.maybe_received:
                return self._cancel_failed(cancel_id, cand, exc)
            # No usable answer, but Tapis may have queued the cancel: follow the job as if it
            # was sent. Following re-sends it once if the job is still active after
            # resend_after, which is the one re-send a cancel ever gets.
            lost = f"{verdict.reason}; the answer to the cancel was lost ({exc.detail})"
            self._follower.sent(followers, cancel_id, job, verdict.rule, lost)
            return True
        except TapisError as exc:
            return self._cancel_failed(cancel_id, cand, exc)
        self._follower.sent(followers, cancel_id, job, verdict.rule, verdict.reason)
        return True

    def _cancel_failed(self, cancel_id: int, cand: _Candidate, exc: TapisError) -> bool:
        """A cancel Tapis did not take. Unavailable: the next poll checks the status afresh and
        tries again. Any other refusal is final."""
        job, verdict = cand.job, cand.verdict
        outcome = UNAVAILABLE if isinstance(exc, TapisUnavailableError) else "failed"
        self.store.finish_cancel(cancel_id, outcome, datetime.now(UTC), detail=str(exc))
        self.store.record_acted(job.uuid, verdict.rule, datetime.now(UTC), outcome)
        self.events.job_cancel_failed(
            job,
            rule=verdict.rule,
            reason=verdict.reason,
            http_status=exc.http_status,
            error=exc.detail,
            dry_run=False,
        )
        return False

    def _refused(self, cancel_id: int, cand: _Candidate, why: str, exc: TapisError) -> None:
        at = datetime.now(UTC)
        self.store.finish_cancel(cancel_id, why, at, detail=str(exc))
        self.store.record_acted(cand.job.uuid, cand.verdict.rule, at, why)
        self.events.job_cancel_skipped(
            cand.job,
            rule=cand.verdict.rule,
            reason=f"{cand.verdict.reason}; {exc.detail}",
            why=why,
            dry_run=False,
        )

    # ------------------------------------------------------------------ verification
    async def resume_pending(self, followers: TaskGroup) -> None:
        """After a restart: follow cancels that were sent (or may have been) but not confirmed."""
        await self._follower.resume_pending(followers)


def _dry_warning_key(first_match_at: datetime) -> str:
    """The once-only claim of a match's dry-run `job_warned` (one per match, across restarts)."""
    return f"job_warned:dry_run:{first_match_at.isoformat()}"
