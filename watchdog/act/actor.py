"""Apply a poll's plan: one state transaction, then events, then the Tapis calls it names.

Per poll, `Actor.handle_poll` runs the pipeline with data between the steps:

1. read what the store knows about the listed jobs at once (`StateStore.snapshot`, a fixed number
   of queries whatever the number of jobs), or a dry run's view of it (`state.shadow.ShadowStore`);
2. read the Tapis histories the plan needs (`poll.history`, concurrent, only for jobs whose
   status clock is not kept yet and could matter);
3. decide (`rules.poll_plan.plan_poll`, pure): the listing to record, matches, warnings, clears,
   skips (among them the cancels the silences in force spare), the breaker and the cancels due;
4. apply: the plan's state changes in one transaction (the listing first), then its events in
   order, then notes into the warned jobs' Tapis histories (`sendEvent`), look-ups of warned jobs
   that left the listing (for their `job_cleared`), and the cancels.

A cancel is written to the state store as an intent before it is sent, then handed to
`verify.CancelFollower`, which follows it until the job is terminal (`job_cancelled`) or
`verify_timeout` passes (`job_cancel_unconfirmed`), re-sending it once if the job is still active
after `resend_after`; a cancel that failed because Tapis was unavailable is tried again on the
next poll, any other refusal is final. A dry run sends nothing to Tapis, writes no decision to the
store and resumes no cancel left pending by a real run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio

from watchdog.act.attempts import send_cancel
from watchdog.act.ended import refresh_ended
from watchdog.act.verify import CancelFollower
from watchdog.errors import (
    JobNotAuthorizedError,
    JobNotFoundError,
    JobRecordError,
    JobTerminalError,
    TapisError,
    TapisUnavailableError,
)
from watchdog.jobs import TERMINAL_STATUSES, Job, parse_job
from watchdog.poll.history import fetch_status_entries
from watchdog.rules.poll_plan import (
    BudgetEvent,
    CircuitEvent,
    JobEvent,
    PlanSettings,
    jobs_needing_history,
    plan_poll,
)
from watchdog.state.shadow import ShadowStore
from watchdog.state.snapshot import UNAVAILABLE, StateChanges

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskGroup

    from watchdog.config.budget_schema import ChargeRates
    from watchdog.config.model import SafetySettings
    from watchdog.events import EventLog
    from watchdog.rules.budgets import BudgetStatus, CompiledBudget
    from watchdog.rules.evaluate import CompiledRule
    from watchdog.rules.poll_plan import Cancel, Lookup, PollPlan
    from watchdog.rules.silence import SpareHint
    from watchdog.state.store import StateStore
    from watchdog.tapis.client import TapisClient


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll decided: counts for `poll_completed`."""

    matches: int
    cancels: int
    budgets: tuple[BudgetStatus, ...] = ()
    """Where each budget stood at this poll (for the metrics)."""


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
    spare: SpareHint | None = None
    """How grace warnings name the command that lets a job run (set by the daemon)."""
    budgets: tuple[CompiledBudget, ...] = ()
    """The budgets across jobs, compiled (set by the daemon, again on reload)."""
    charge_rates: ChargeRates | None = None
    list_type: str = "MY_JOBS"
    """How ended jobs are searched for the budgets (`poll.list_type`, `poll.page_size`)."""
    page_size: int = 500
    _follower: CancelFollower = field(init=False, repr=False)
    _shadow: ShadowStore | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        # The follower reads safety, resend_after and follow_max_interval from this actor when
        # it uses them, so what a reload sets here applies to following too.
        self._follower = CancelFollower(self.client, self.store, self.events, policy=self)

    def _records(self, dry_run: bool) -> StateStore | ShadowStore:
        """Where this poll's decisions are read from and written to."""
        if not dry_run:
            self._shadow = None  # leaving dry run: its memory never becomes real state
            return self.store
        if self._shadow is None:
            self._shadow = ShadowStore(self.store)
        return self._shadow

    # ------------------------------------------------------------------ per poll
    async def handle_poll(
        self,
        jobs: Sequence[Job],
        rules: Sequence[CompiledRule],
        now: datetime,
        followers: TaskGroup,
    ) -> PollOutcome:
        """Read, decide, apply: record and log decisions, and start the cancels that are due.

        Cancels are sent before this returns; following them until they are terminal runs in
        `followers`, so the caller decides how long to wait for confirmations.
        """
        dry_run = self.dry_run
        statuses = {job.uuid: job.status for job in jobs}
        records = self._records(dry_run)
        snapshot = records.snapshot(statuses, now)
        if self.budgets:
            ended = await refresh_ended(
                self.client,
                self.store,
                self.events,
                self.budgets,
                now,
                list_type=self.list_type,
                page_size=self.page_size,
            )
            snapshot = replace(snapshot, ended=ended)
        wanted = jobs_needing_history(jobs, rules, snapshot, now)
        entered = await fetch_status_entries(self.client, wanted, now) if wanted else {}
        settings = PlanSettings.from_safety(
            self.safety,
            dry_run=dry_run,
            following=frozenset(self._follower.following),
            silences=tuple(self.store.active_silences(now)),
            spare=self.spare,
            identity=self.client.identity,
            budgets=self.budgets,
            charge_rates=self.charge_rates,
        )
        decided = plan_poll(jobs, rules, snapshot, now, settings, entered=entered)
        records.apply(decided.changes)
        cancels = await self._carry_out(decided, records, now, followers)
        return PollOutcome(matches=decided.matches, cancels=cancels, budgets=decided.budgets)

    def _log_plan_event(self, event: CircuitEvent | BudgetEvent) -> None:
        """A plan's event about the breaker or a budget (not about one job)."""
        if isinstance(event, BudgetEvent):
            self.events.budget_event(
                event.event,
                budget=event.budget,
                usage=event.usage,
                limit=event.limit,
                unit=event.unit,
                reason=event.reason,
                budget_level=event.level,
                dry_run=event.dry_run,
            )
        elif event.event == "circuit_opened":
            self.events.circuit_opened(reason=event.reason, due=event.due, allowed=event.allowed)
        else:
            self.events.circuit_closed(reason=event.reason)

    async def _carry_out(
        self,
        decided: PollPlan,
        records: StateStore | ShadowStore,
        now: datetime,
        followers: TaskGroup,
    ) -> int:
        """Log the plan's events, then make its Tapis calls. Returns the cancels sent."""
        notes: list[JobEvent] = []
        for event in decided.events:
            if isinstance(event, JobEvent):
                self._log(event)
                if event.note_tapis:
                    notes.append(event)
            else:
                self._log_plan_event(event)
        async with anyio.create_task_group() as tg:
            for note in notes:
                tg.start_soon(self._note_tapis, note)
        for lookup in decided.lookups:
            await self._clear_gone(lookup, records, now)
        sent = 0

        async def one(cand: Cancel) -> None:
            nonlocal sent
            if await self._cancel(cand, followers):
                sent += 1

        async with anyio.create_task_group() as tg:
            for cand in decided.cancels:
                tg.start_soon(one, cand)
        return sent

    def _log(self, event: JobEvent) -> None:
        job, rule, reason, dry = event.job, event.rule, event.reason, event.dry_run
        if event.event == "rule_matched":
            self.events.rule_matched(job, rule=rule, reason=reason, dry_run=dry)
        elif event.event == "job_warned":
            self.events.job_warned(job, rule=rule, reason=reason, dry_run=dry, **event.fields)
        elif event.event == "job_cleared":
            self.events.job_cleared(job, rule=rule, reason=reason, dry_run=dry)
        else:
            self.events.job_cancel_skipped(
                job, rule=rule, reason=reason, why=event.why or "", dry_run=dry, **event.fields
            )

    async def _note_tapis(self, event: JobEvent) -> None:
        """A warning into the job's Tapis history, so its subscribers hear of it."""
        # A failed sendEvent is logged by the client; a warning never blocks a decision.
        text = f"tapis-watchdog: rule {event.rule}: {event.reason}"
        command = event.fields.get("spare_command")
        if command:
            text += f". To let it run: {command}"
        with contextlib.suppress(TapisError):
            await self.client.send_event(event.job.uuid, text, "WATCHDOG_WARNING")

    async def _clear_gone(
        self, lookup: Lookup, records: StateStore | ShadowStore, now: datetime
    ) -> None:
        """The `job_cleared` of a warned match whose job the poll no longer lists."""
        decision = lookup.decision
        uuid, rule = decision.job_uuid, decision.rule
        cleared = StateChanges(
            at=now,
            cleared=((uuid, rule),),
            decisions=(replace(decision, first_match_at=None, cleared_at=now),),
        )
        try:
            job = parse_job(await self.client.get_job(uuid))
        except JobNotFoundError:
            # Tapis no longer knows it: nothing to tell anyone, nothing to keep.
            records.apply(cleared)
            return
        except (TapisError, JobRecordError):
            return  # Tapis trouble must not lose the event: the next poll tries again
        records.apply(cleared)
        reason = f"job is {job.status}, no longer watched; rule {rule} is over"
        self.events.job_cleared(job, rule=rule, reason=reason, dry_run=lookup.dry_run)

    # ------------------------------------------------------------------ acting
    async def _cancel(  # noqa: PLR0911 - one exit per outcome of the seed's flow
        self, cand: Cancel, followers: TaskGroup
    ) -> bool:
        """Fresh status check, then cancelJob (see `act.attempts`). True when it was sent."""
        job = cand.job
        now = datetime.now(UTC)
        cancel_id = self.store.begin_cancel(job.uuid, cand.rule, now)
        try:
            status = await self.client.get_status(job.uuid)
        except JobNotAuthorizedError as exc:
            self._refused(cancel_id, cand, "not_authorized", exc)
            return False
        except TapisUnavailableError as exc:
            # Nothing was sent, so nothing is logged as requested: the next poll checks afresh.
            self._status_unknown(cancel_id, cand, exc)
            return False
        except TapisError as exc:
            return self._cancel_failed(cancel_id, cand, exc)
        if status in TERMINAL_STATUSES:
            terminal = JobTerminalError("getJobStatus", f"job is {status}", job_uuid=job.uuid)
            self._refused(cancel_id, cand, "already_terminal", terminal)
            return False
        sent = await send_cancel(self.client, self.store, cancel_id, job.uuid, cand.rule)
        if sent.attempt is not None and sent.maybe_received:
            reason = cand.reason
            if sent.error is not None:
                # No usable answer, but Tapis may have queued the cancel: follow the job as if
                # it was sent; the one re-send comes resend_after after this attempt.
                reason = f"{reason}; the answer to the cancel was lost ({sent.error.detail})"
            self._follower.sent(followers, cancel_id, job, cand.rule, reason, attempt=sent.attempt)
            return True
        if isinstance(sent.error, JobTerminalError):
            self._refused(cancel_id, cand, "already_terminal", sent.error)
        elif isinstance(sent.error, JobNotAuthorizedError):
            self._refused(cancel_id, cand, "not_authorized", sent.error)
        elif sent.error is not None:
            # Provably never sent (retried next poll), or refused for good.
            return self._cancel_failed(cancel_id, cand, sent.error)
        else:
            # Two requests already went out for this decision: a third is never sent.
            self.store.finish_cancel(cancel_id, "limit", datetime.now(UTC))
            self.store.record_acted(job.uuid, cand.rule, datetime.now(UTC), "requested")
        return False

    def _status_unknown(self, cancel_id: int, cand: Cancel, exc: TapisError) -> None:
        """The fresh status check failed (logged by the client as tapis_error): the cancel ends
        unsent, and the decision stays open for the next poll."""
        at = datetime.now(UTC)
        self.store.finish_cancel(cancel_id, UNAVAILABLE, at, detail=f"status check: {exc}")
        self.store.record_acted(cand.job.uuid, cand.rule, at, UNAVAILABLE)

    def _cancel_failed(self, cancel_id: int, cand: Cancel, exc: TapisError) -> bool:
        """A cancel Tapis did not take. Unavailable: the next poll checks the status afresh and
        tries again. Any other refusal is final."""
        job = cand.job
        outcome = UNAVAILABLE if isinstance(exc, TapisUnavailableError) else "failed"
        self.store.finish_cancel(cancel_id, outcome, datetime.now(UTC), detail=str(exc))
        self.store.record_acted(job.uuid, cand.rule, datetime.now(UTC), outcome)
        self.events.job_cancel_failed(
            job,
            rule=cand.rule,
            reason=cand.reason,
            http_status=exc.http_status,
            error=exc.detail,
            dry_run=False,
        )
        return False

    def _refused(self, cancel_id: int, cand: Cancel, why: str, exc: TapisError) -> None:
        at = datetime.now(UTC)
        self.store.finish_cancel(cancel_id, why, at, detail=str(exc))
        self.store.record_acted(cand.job.uuid, cand.rule, at, why)
        self.events.job_cancel_skipped(
            cand.job,
            rule=cand.rule,
            reason=f"{cand.reason}; {exc.detail}",
            why=why,
            dry_run=False,
        )

    # ------------------------------------------------------------------ verification
    async def resume_pending(self, followers: TaskGroup) -> None:
        """After a restart: follow cancels that were sent (or may have been) but not confirmed.

        Not in a dry run: following may send a cancel that a stopped real run had only decided.
        """
        if self.dry_run:
            return
        await self._follower.resume_pending(followers)
