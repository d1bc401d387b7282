"""One poll's decisions: (jobs, rules, state snapshot, now, settings) → a `PollPlan`. Pure.

No I/O, nothing async, never reads the clock. The daemon reads a `StateSnapshot` of the polled jobs,
calls `plan_poll`, and applies the plan (`act.actor`): the plan's `StateChanges` in one
transaction, then its events in order, then its Tapis calls (warnings into job histories, look-ups
of jobs that left, cancels). Per job it decides through `rules.plan.plan`, the function `explain`
and `test-rules` use, so they show what the daemon does.

What a plan holds, in the order the daemon used to do it step by step:

- each (job, rule) match that starts now (`rule_matched`): the first, or the first since cleared;
- warnings: a `warn` rule, or a `cancel` rule whose grace has started, warns once per match
  (`job_warned`, and a note into the job's Tapis history unless dry); a per-rule dry-run rule's
  warning is logged once per match and reaches no one;
- clears: an open match that did not hold this poll is over (`job_cleared` if it was warned); a
  warned match of a job the poll no longer lists needs the job's current record first (a look-up);
- skips, once per outcome: per-rule dry-run rules (`dry_run`), exempt jobs (`exempt`), jobs the
  identity does not own (`not_authorized`: listed through sharing, which gives no right to cancel;
  nothing is sent), and what the circuit breaker holds (`circuit_open`);
- the cancels to send, at most one per job: the first due `cancel` rule in file order.

In a dry run (`PlanSettings.dry_run`) the plan is the one a real run would make from the same state,
except that each cancel it would send is a skip (`dry_run`), and the cancels the breaker would hold
are skips (`circuit_open`) whose reason says why; a dry run's plan goes to a memory of its own
(`state.shadow`), never to the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from watchdog.rules.evaluate import needs_status_since
from watchdog.rules.plan_data import (
    BudgetEvent,
    Cancel,
    CircuitEvent,
    JobEvent,
    Lookup,
    PlanSettings,
    PollPlan,
)
from watchdog.rules.planner import CLOCK_IN_RECORD, Planner

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from watchdog.jobs import Job
    from watchdog.rules.evaluate import CompiledRule
    from watchdog.state.snapshot import StateSnapshot

__all__ = [
    "BudgetEvent",
    "Cancel",
    "CircuitEvent",
    "JobEvent",
    "Lookup",
    "PlanSettings",
    "PollPlan",
    "jobs_needing_history",
    "plan_poll",
]


def jobs_needing_history(
    jobs: Sequence[Job], rules: Sequence[CompiledRule], snapshot: StateSnapshot, now: datetime
) -> list[Job]:
    """Jobs whose entry into their status must be read from their Tapis history before the plan.

    Not RUNNING or QUEUED (their record has it), no clock kept in the store for this visit, and a
    rule whose answer could depend on it (`rules.evaluate.needs_status_since`).
    """
    return [
        job
        for job in jobs
        if job.status not in CLOCK_IN_RECORD
        and job.uuid not in snapshot.status_entries
        and needs_status_since(job, rules, now)
    ]


def plan_poll(
    jobs: Sequence[Job],
    rules: Sequence[CompiledRule],
    snapshot: StateSnapshot,
    now: datetime,
    settings: PlanSettings,
    *,
    entered: Mapping[str, datetime] | None = None,
) -> PollPlan:
    """Decide one poll.

    Args:
        jobs: every job the poll saw, whole.
        rules: the compiled rules, in file order.
        snapshot: what the state store knows about these jobs (`StateStore.snapshot`).
        now: the poll's time.
        settings: exemptions, breaker limits, dry run, the jobs being followed.
        entered: entry times into their status read from job histories this poll (job uuid →
            time); they are recorded with the plan.
    """
    return Planner(snapshot, now, settings).run(jobs, rules, entered or {})
