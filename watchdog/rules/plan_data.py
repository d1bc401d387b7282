"""The data a poll's plan is made of: the settings it reads, and what it tells the daemon to do.

`rules.poll_plan.plan_poll` returns a `PollPlan`; `act.actor` carries it out: `changes` in one state
transaction, then `events` in order (each `JobEvent` is the `EventLog` method of its name), then the
Tapis calls (`JobEvent.note_tapis` warnings, `lookups`, `cancels`). Plain frozen data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from watchdog.config.budget_schema import ChargeRates
    from watchdog.config.model import ExemptSettings, SafetySettings
    from watchdog.jobs import Job
    from watchdog.rules.budgets import BudgetStatus, CompiledBudget
    from watchdog.rules.silence import SpareHint
    from watchdog.state.schema import Silence
    from watchdog.state.snapshot import Decision, StateChanges

__all__ = [
    "BudgetEvent",
    "Cancel",
    "CircuitEvent",
    "JobEvent",
    "Lookup",
    "PlanSettings",
    "PollPlan",
]

JobEventName = Literal["rule_matched", "job_warned", "job_cleared", "job_cancel_skipped"]


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """What the plan reads from the configuration and the daemon besides rules and state."""

    exempt: ExemptSettings
    max_cancels_per_poll: int
    max_cancels_per_hour: int
    dry_run: bool = False
    following: frozenset[str] = frozenset()
    """Jobs whose cancel is being followed now: never cancelled twice."""
    silences: tuple[Silence, ...] = ()
    """The silences in force at this poll (`StateStore.active_silences`)."""
    spare: SpareHint | None = None
    """How grace warnings write the command that lets the job run (none: not named)."""
    identity: str | None = None
    """The user Tapis acts as: a job owned by someone else (listed through sharing) is never
    cancelled, since sharing gives no right to cancel (None: unknown, every job counts as own)."""
    budgets: tuple[CompiledBudget, ...] = ()
    """The budgets across jobs (`rules.budgets`), in file order after the rules."""
    charge_rates: ChargeRates | None = None
    """SU per node hour, for su budgets."""

    @classmethod
    def from_safety(
        cls,
        safety: SafetySettings,
        *,
        dry_run: bool,
        following: frozenset[str] = frozenset(),
        silences: tuple[Silence, ...] = (),
        spare: SpareHint | None = None,
        identity: str | None = None,
        budgets: tuple[CompiledBudget, ...] = (),
        charge_rates: ChargeRates | None = None,
    ) -> PlanSettings:
        return cls(
            exempt=safety.exempt,
            max_cancels_per_poll=safety.max_cancels_per_poll,
            max_cancels_per_hour=safety.max_cancels_per_hour,
            dry_run=dry_run,
            following=following,
            silences=silences,
            spare=spare,
            identity=identity,
            budgets=budgets,
            charge_rates=charge_rates,
        )


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A job event to log (`events.EventLog` has a method of that name)."""

    event: JobEventName
    job: Job
    rule: str
    reason: str
    dry_run: bool
    why: str | None = None
    note_tapis: bool = False
    """A `job_warned` that also goes into the job's Tapis history (`sendEvent`)."""
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CircuitEvent:
    """The breaker changed state: `circuit_opened` or `circuit_closed`."""

    event: Literal["circuit_opened", "circuit_closed"]
    reason: str
    due: int
    allowed: int


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """A budget crossed a level: `budget_warned`, `budget_exceeded` or `budget_recovered`."""

    event: Literal["budget_warned", "budget_exceeded", "budget_recovered"]
    budget: str
    usage: float
    limit: float
    unit: str
    reason: str
    level: str
    dry_run: bool


@dataclass(frozen=True, slots=True)
class Lookup:
    """A warned match of a job the poll no longer lists: its `job_cleared` needs its record."""

    decision: Decision
    dry_run: bool


@dataclass(frozen=True, slots=True)
class Cancel:
    """A cancel to send: fresh status check, `cancelJob`, then follow it."""

    job: Job
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class PollPlan:
    """Everything one poll does, as data: write `changes`, log `events`, then call Tapis."""

    changes: StateChanges
    events: tuple[JobEvent | CircuitEvent | BudgetEvent, ...]
    lookups: tuple[Lookup, ...]
    cancels: tuple[Cancel, ...]
    matches: int
    budgets: tuple[BudgetStatus, ...] = ()
    """Where each budget stands at this poll (for metrics, the page and `budgets`)."""
