"""The working of `rules.poll_plan.plan_poll`: one poll's decisions, made in file order. Pure.

`Planner` walks the polled jobs once, deciding each through `rules.plan.plan`, and keeps the
decisions as this poll's changes leave them, so a later step of the same poll (a warning after a
match starts, a skip after a warning) sees what an earlier one decided. What it returns is data:
`StateChanges` for the store, events in order, look-ups and cancels (`rules.plan_data`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from watchdog.rules.breaker import decide_breaker
from watchdog.rules.budget_plan import plan_budgets
from watchdog.rules.budgets import ended_run
from watchdog.rules.evaluate import evaluate_matches
from watchdog.rules.plan import is_exempt, plan
from watchdog.rules.plan_data import (
    BudgetEvent,
    Cancel,
    CircuitEvent,
    JobEvent,
    Lookup,
    PlanSettings,
    PollPlan,
)
from watchdog.rules.silence import (
    SilenceIndex,
    after_silence,
    grace_warning,
    silenced_skip,
)
from watchdog.state.snapshot import (
    SILENCED,
    Decision,
    StateChanges,
    dry_warning_key,
    is_transient,
    silence_of,
    silenced_outcome,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from watchdog.jobs import Job
    from watchdog.rules.evaluate import CompiledRule, Verdict
    from watchdog.rules.plan import Step
    from watchdog.state.snapshot import StateSnapshot

CLOCK_IN_RECORD = frozenset({"RUNNING", "QUEUED"})


class Planner:
    """The decisions of one poll, made against the snapshot as this poll's changes leave it."""

    def __init__(self, snapshot: StateSnapshot, now: datetime, settings: PlanSettings) -> None:
        self.silences = SilenceIndex(settings.silences, now)
        self.now = now
        self.settings = settings
        self.snapshot = snapshot
        self.decisions: dict[tuple[str, str], Decision] = dict(snapshot.decisions)
        self.touched: dict[tuple[str, str], Decision] = {}
        self.claims_known = set(snapshot.dry_warnings)
        self.events: list[JobEvent | CircuitEvent | BudgetEvent] = []
        self.matches: list[tuple[str, str]] = []
        self.warned: list[tuple[str, str]] = []
        self.cleared: list[tuple[str, str]] = []
        self.acted: list[tuple[str, str, str]] = []
        self.claims: list[tuple[str, str, str]] = []
        self.dry_cancels: list[tuple[str, str]] = []
        self.lookups: list[Lookup] = []
        self.cancels: list[Cancel] = []
        self.breaker_open: bool | None = None
        self.budget_order: dict[tuple[str, str], int] = {}
        """(job, budget) → its place in the budget's cancel order (newest first, ...)."""

    def run(
        self, jobs: Sequence[Job], rules: Sequence[CompiledRule], entered: Mapping[str, datetime]
    ) -> PollPlan:
        since = {**self.snapshot.status_entries, **entered}
        ended = (ended_run(record) for record in self.snapshot.ended)
        budgets = plan_budgets(jobs, ended, self.snapshot.budget_levels, self.now, self.settings)
        self.events.extend(budgets.events)
        self.budget_order = {
            (job.uuid, status.name): place
            for status in budgets.statuses
            for place, job in enumerate(status.over)
        }
        matches = 0
        candidates: list[tuple[Job, Verdict]] = []
        shadows: list[tuple[Job, Verdict]] = []
        spared: list[tuple[Job, Step]] = []
        seen: dict[str, set[str]] = {}
        for job in jobs:
            status_since = None if job.status in CLOCK_IN_RECORD else since.get(job.uuid)
            # Only what matched is explained: the plan needs nothing else.
            matched = evaluate_matches(job, rules, self.now, status_since)
            matched += budgets.verdicts.get(job.uuid, ())
            seen[job.uuid] = {v.rule for v in matched}
            matches += len(matched)
            if not matched:
                continue
            first_match = self._record_matches(job, matched)
            exempt = is_exempt(job, self.settings.exempt)
            rule_names = [v.rule for v in matched]
            silenced = self.silences.by_rule(job, rule_names)
            decided = plan(matched, first_match, self.now, exempt=exempt, silenced=silenced)
            self._dispatch(job, decided.steps, candidates, shadows, spared)
        dry_rules = {r.name for r in rules if r.dry_run}
        dry_rules |= {b.name for b in self.settings.budgets if b.config.dry_run}
        self._clear_stale({job.uuid: job for job in jobs}, seen, dry_rules)
        for job, verdict in shadows:
            self._skip_once(job, verdict, "dry_run")
        for job, step in spared:
            self._spare(job, step)
        self._act(candidates)
        statuses = {job.uuid: job.status for job in jobs}
        changes = StateChanges(
            at=self.now,
            seen=tuple(statuses.items()),
            status_entries=tuple(
                (uuid, statuses[uuid], at) for uuid, at in entered.items() if uuid in statuses
            ),
            matches=tuple(self.matches),
            warned=tuple(self.warned),
            cleared=tuple(self.cleared),
            acted=tuple(self.acted),
            dry_warnings=tuple(self.claims),
            breaker_open=self.breaker_open,
            dry_cancels=tuple(self.dry_cancels),
            decisions=tuple(self.touched.values()),
            budget_levels=budgets.levels,
        )
        return PollPlan(
            changes=changes,
            events=tuple(self.events),
            lookups=tuple(self.lookups),
            cancels=tuple(self.cancels),
            matches=matches,
            budgets=budgets.statuses,
        )

    def _dispatch(
        self,
        job: Job,
        steps: Sequence[Step],
        candidates: list[tuple[Job, Verdict]],
        shadows: list[tuple[Job, Verdict]],
        spared: list[tuple[Job, Step]],
    ) -> None:
        """Warn now; sort the rest into cancels, shadows and spared cancels, for after clears."""
        for step in steps:
            if step.kind == "warn":
                self._warn(job, step.verdict, step.verdict.reason)
            elif step.kind == "grace" and step.grace_until is not None:
                reason, fields = grace_warning(step, job.uuid, self.settings.spare)
                self._warn(job, step.verdict, reason, fields)
            elif step.kind == "shadow":
                shadows.append((job, step.verdict))
            elif step.kind == "cancel":
                candidates.append((job, step.verdict))
            elif step.kind == "silenced" and step.silence is not None:
                spared.append((job, step))

    # -- matches and warnings ----------------------------------------------------------------------

    def _set(self, decision: Decision) -> None:
        key = (decision.job_uuid, decision.rule)
        self.decisions[key] = decision
        self.touched[key] = decision

    def _record_matches(self, job: Job, matched: Sequence[Verdict]) -> dict[str, datetime]:
        """Record each match (`rule_matched` when it starts); return when each rule's grace
        period started.

        A live rule's grace starts with its warning (one not yet warned, e.g. it matched while
        it was a dry-run rule, starts its grace now, with that warning); a per-rule dry-run
        rule's grace starts at its first match.
        """
        grace_start: dict[str, datetime] = {}
        for verdict in matched:
            decision = self.decisions.get((job.uuid, verdict.rule))
            if decision is None or (decision.first_match_at is None and decision.acted_at is None):
                decision = _started(decision, job.uuid, verdict.rule, self.now)
                self._set(decision)
                self.matches.append((job.uuid, verdict.rule))
                dry = self.settings.dry_run or verdict.dry_run
                self.events.append(JobEvent("rule_matched", job, verdict.rule, verdict.reason, dry))
            if decision.first_match_at is None:
                continue
            if verdict.dry_run:
                grace_start[verdict.rule] = decision.first_match_at
            elif decision.warned_at is not None:
                grace_start[verdict.rule] = decision.warned_at
        return grace_start

    def _warn(
        self, job: Job, verdict: Verdict, reason: str, fields: Mapping[str, Any] | None = None
    ) -> None:
        """Warn once per match: `job_warned`, and a note in the job's Tapis history unless dry.

        A per-rule dry-run rule's warning is only logged, once per match; it is not the
        decision's warning, so the rule warns for real before it acts once it goes live.
        """
        key = (job.uuid, verdict.rule)
        decision = self.decisions.get(key)
        if verdict.dry_run:
            if decision is None or decision.first_match_at is None or decision.warned_at:
                return
            claim = (job.uuid, verdict.rule, dry_warning_key(decision.first_match_at))
            if claim in self.claims_known:
                return
            self.claims_known.add(claim)
            self.claims.append(claim)
            self.events.append(
                JobEvent("job_warned", job, verdict.rule, reason, dry_run=True, fields=fields or {})
            )
            return
        if decision is not None and decision.warned_at is not None:
            return
        if decision is None:
            decision = Decision(job.uuid, verdict.rule, self.now, self.now, None, None, None)
        else:
            decision = replace(
                decision, warned_at=self.now, first_match_at=decision.first_match_at or self.now
            )
        self._set(decision)
        self.warned.append(key)
        dry = self.settings.dry_run
        self.events.append(
            JobEvent(
                "job_warned",
                job,
                verdict.rule,
                reason,
                dry_run=dry,
                note_tapis=not dry,
                fields=fields or {},
            )
        )

    def _clear_stale(
        self, by_uuid: Mapping[str, Job], seen: Mapping[str, set[str]], dry_rules: set[str]
    ) -> None:
        """Matches that did not hold this poll are over.

        The poll saw every watched job whole, so a job it did not list has left the watched
        statuses (usually: it ended on its own during a grace period); a look-up of it is
        planned, for its `job_cleared`, only when its match had been warned about.
        """
        # Only the matches that did not hold are put in order (oldest first), not every open one.
        over = sorted(
            (
                d
                for d in self.decisions.values()
                if d.first_match_at is not None
                and d.acted_at is None
                and d.rule not in seen.get(d.job_uuid, ())
            ),
            key=lambda d: (d.first_match_at, d.job_uuid, d.rule),
        )
        for decision in over:
            uuid, rule = decision.job_uuid, decision.rule
            job = by_uuid.get(uuid)
            shadow = rule in dry_rules
            dry = self.settings.dry_run or shadow
            warned = decision.warned_at is not None
            if not warned and shadow and decision.first_match_at is not None:
                claim = (uuid, rule, dry_warning_key(decision.first_match_at))
                warned = claim in self.claims_known
            if job is None and warned:
                self.lookups.append(Lookup(decision, dry_run=dry))
                continue
            self._set(replace(decision, first_match_at=None, cleared_at=self.now))
            self.cleared.append((uuid, rule))
            if warned and job is not None:
                reason = f"no longer matches rule {rule}"
                self.events.append(JobEvent("job_cleared", job, rule, reason, dry))

    # -- skips and cancels -------------------------------------------------------------------------

    def _skip_once(
        self,
        job: Job,
        verdict: Verdict,
        why: str,
        *,
        reason: str | None = None,
        fields: Mapping[str, Any] | None = None,
        outcome: str | None = None,
    ) -> bool:
        """A skipped cancel, logged once per outcome (`outcome`, by default `why`). True when it
        is logged now."""
        outcome = outcome or why
        decision = self.decisions.get((job.uuid, verdict.rule))
        if decision is not None and decision.outcome == outcome:
            return False
        if decision is None:
            decision = Decision(job.uuid, verdict.rule, self.now, None, self.now, None, outcome)
        else:
            decision = replace(decision, acted_at=decision.acted_at or self.now, outcome=outcome)
        self._set(decision)
        self.acted.append((job.uuid, verdict.rule, outcome))
        dry = why == "dry_run" or self.settings.dry_run or verdict.dry_run
        self.events.append(
            JobEvent(
                "job_cancel_skipped",
                job,
                verdict.rule,
                reason or verdict.reason,
                dry_run=dry,
                why=why,
                fields=fields or {},
            )
        )
        return True

    def _already_done(self, job: Job, verdict: Verdict) -> bool:
        decision = self.decisions.get((job.uuid, verdict.rule))
        if (
            decision is not None
            and decision.acted_at is not None
            and not is_transient(decision.outcome)
        ):
            return True
        return job.uuid in self.settings.following

    def _spare(self, job: Job, step: Step) -> None:
        """A cancel a silence spares: skipped (why: silenced), logged once per silence."""
        if self._already_done(job, step.verdict) or step.silence is None:
            return
        reason, fields = silenced_skip(step)
        outcome = silenced_outcome(step.silence.id)
        self._skip_once(job, step.verdict, SILENCED, reason=reason, fields=fields, outcome=outcome)

    def _act(self, candidates: Sequence[tuple[Job, Verdict]]) -> None:
        due: list[tuple[Job, Verdict]] = []
        for job, verdict in candidates:
            if self._already_done(job, verdict):
                continue
            if is_exempt(job, self.settings.exempt):
                self._skip_once(job, verdict, "exempt")
            elif not owned_by(job, self.settings.identity):
                # Listed through sharing: Tapis gives no right to cancel it (401 on cancelJob).
                self._skip_once(job, verdict, "not_authorized")
            else:
                due.append((job, verdict))
        # Rules' cancels in poll order, then budgets' in their own order, for the breaker's cut.
        due.sort(key=lambda item: self.budget_order.get((item[0].uuid, item[1].rule), -1))
        allowed = self._breaker(due)
        dry = self.settings.dry_run
        for job, verdict in due[:allowed]:
            if not dry:
                decision = self.decisions.get((job.uuid, verdict.rule))
                spared_by = silence_of(decision.outcome if decision is not None else None)
                reason = after_silence(verdict.reason, spared_by)
                self.cancels.append(Cancel(job, verdict.rule, reason))
            elif self._skip_once(job, verdict, "dry_run"):
                self.dry_cancels.append((job.uuid, verdict.rule))

    def _breaker(self, due: Sequence[tuple[Job, Verdict]]) -> int:
        """The breaker's decision on the due cancels: how many may go; skips for the rest."""
        dry = self.settings.dry_run
        breaker = decide_breaker(
            len(due),
            was_open=self.snapshot.breaker_open,
            sent_last_hour=self.snapshot.cancels_last_hour,
            max_per_poll=self.settings.max_cancels_per_poll,
            max_per_hour=self.settings.max_cancels_per_hour,
        )
        if breaker.opens or breaker.closes:
            self.breaker_open = breaker.opens
            if not dry:
                name: Literal["circuit_opened", "circuit_closed"] = (
                    "circuit_opened" if breaker.opens else "circuit_closed"
                )
                self.events.append(CircuitEvent(name, breaker.reason, breaker.due, breaker.allowed))
        for job, verdict in due[breaker.allowed :]:
            if dry:
                # What a real run would see: the breaker, and why, on each cancel it holds.
                self._skip_once(
                    job,
                    verdict,
                    "circuit_open",
                    reason=f"{verdict.reason}; the circuit breaker would hold it: {breaker.reason}",
                    fields={"due": breaker.due, "allowed": breaker.allowed},
                )
            else:
                self._skip_once(job, verdict, "circuit_open")
        return breaker.allowed


def owned_by(job: Job, identity: str | None) -> bool:
    """Whether the identity owns the job, so may cancel it (an unknown owner or identity: yes)."""
    return not job.owner or identity is None or job.owner == identity


def _started(decision: Decision | None, job_uuid: str, rule: str, now: datetime) -> Decision:
    """A match starting now: a fresh grace period, not yet warned."""
    if decision is None:
        return Decision(job_uuid, rule, now, None, None, None, None)
    return replace(decision, first_match_at=now, warned_at=None, cleared_at=None)
