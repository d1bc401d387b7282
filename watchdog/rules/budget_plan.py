"""A poll's budgets: where each stands, the verdicts it adds to its jobs, its level events. Pure.

`rules.planner.Planner` calls `plan_budgets` before deciding the jobs: each budget is assessed
(`rules.budgets.assess`) on the poll's jobs and the runs the store kept, a budget over its limit
adds a verdict named after it to each job it acts on (decided from there exactly like a rule's),
and a budget whose level changed since the last poll logs one event: `budget_exceeded` as it goes
over, `budget_warned` as it crosses `warn_at`, `budget_recovered` as it comes back below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from watchdog.rules.budgets import assess, budget_verdicts
from watchdog.rules.plan_data import BudgetEvent

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from watchdog.jobs import Job
    from watchdog.rules.budgets import BudgetStatus, Run
    from watchdog.rules.evaluate import Verdict
    from watchdog.rules.plan_data import PlanSettings

__all__ = ["BudgetPlan", "plan_budgets"]

_RANK = {"ok": 0, "warn": 1, "over": 2}


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """The budgets' part of one poll's plan."""

    statuses: tuple[BudgetStatus, ...]
    verdicts: Mapping[str, list[Verdict]]
    events: tuple[BudgetEvent, ...]
    levels: tuple[tuple[str, str], ...]
    """(budget, level) of the budgets whose level changed."""


def plan_budgets(
    jobs: Sequence[Job],
    ended: Iterable[Run],
    levels: Mapping[str, str],
    now: datetime,
    settings: PlanSettings,
) -> BudgetPlan:
    """Assess every budget of `settings` at `now` against the poll's jobs and the ended runs.

    Args:
        jobs: every active job the poll saw.
        ended: the runs that ended, as the store keeps them.
        levels: each budget's level after the last poll (absent: `ok`).
        now: the poll's time.
        settings: the budgets, charge rates and dry run.
    """
    if not settings.budgets:
        return BudgetPlan((), {}, (), ())
    runs = tuple(ended)
    statuses = tuple(
        assess(budget, jobs, runs, now, settings.charge_rates) for budget in settings.budgets
    )
    events: list[BudgetEvent] = []
    changed: list[tuple[str, str]] = []
    for status in statuses:
        before = levels.get(status.name, "ok")
        if before == status.level:
            continue
        changed.append((status.name, status.level))
        name: Literal["budget_warned", "budget_exceeded", "budget_recovered"]
        if status.level == "over":
            name = "budget_exceeded"
        elif _RANK[status.level] > _RANK.get(before, 0):
            name = "budget_warned"
        else:
            name = "budget_recovered"
        dry = settings.dry_run or bool(status.budget.config.dry_run)
        events.append(
            BudgetEvent(
                name,
                status.name,
                round(status.usage, 3),
                status.limit,
                status.unit,
                status.reason,
                status.level,
                dry,
            )
        )
    return BudgetPlan(statuses, budget_verdicts(statuses), tuple(events), tuple(changed))
