"""The data between the state store and the plan: what the store knows, and what a plan changes.

A poll reads one `StateSnapshot` of its jobs (`StateStore.snapshot`), decides with it in
`rules.poll_plan.plan_poll` (pure), and hands the plan's `StateChanges` back to be written in one
transaction (`StateStore.apply`), or kept in memory by a dry run (`state.shadow.ShadowState`). Plain
frozen data, no SQL: the rules may import it.

Outcomes of a (job, rule) decision: `requested`, `cancelled`, `unconfirmed`, `failed`,
`already_terminal`, `not_authorized` are final (the rule never acts on the job again); the ones in
`TRANSIENT_OUTCOMES` are a state of the configuration or of Tapis (dry run, an open breaker, an
exemption, Tapis unavailable when the cancel was sent, or `reconsider`: a dry run's view of any of
these), after which the rule may still act; so is `silenced:<id>`, a cancel a silence spared
(`is_transient` says which).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from watchdog.state.schema import Decision

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

__all__ = [
    "RECONSIDER",
    "SILENCED",
    "TRANSIENT_OUTCOMES",
    "UNAVAILABLE",
    "Decision",
    "EndedJob",
    "StateChanges",
    "StateSnapshot",
    "dry_warning_key",
    "is_transient",
    "silence_of",
    "silenced_outcome",
]

UNAVAILABLE = "unavailable"
RECONSIDER = "reconsider"
TRANSIENT_OUTCOMES = frozenset({"dry_run", "circuit_open", "exempt", UNAVAILABLE, RECONSIDER})
SILENCED = "silenced"
"""A silence spared the cancel: stored as `silenced:<silence id>`, transient like the others."""


def silenced_outcome(silence_id: str) -> str:
    """The outcome of a cancel spared by this silence (so each silence is logged once)."""
    return f"{SILENCED}:{silence_id}"


def silence_of(outcome: str | None) -> str | None:
    """The id of the silence that last spared the cancel, from its outcome, or None."""
    if outcome is None or not outcome.startswith(f"{SILENCED}:"):
        return None
    return outcome.partition(":")[2]


def is_transient(outcome: str | None) -> bool:
    """True for an outcome after which the rule may still act (see the module docstring)."""
    return outcome in TRANSIENT_OUTCOMES or silence_of(outcome) is not None


Key = tuple[str, str]
"""(job uuid, rule name)."""


def dry_warning_key(first_match_at: datetime) -> str:
    """The once-only claim of a match's dry-run `job_warned` (one per match, across restarts)."""
    return f"job_warned:dry_run:{first_match_at.isoformat()}"


@dataclass(frozen=True, slots=True)
class EndedJob:
    """A job that ended, as kept for the budgets' windows: what their selectors and usage read."""

    uuid: str
    status: str
    remote_started: datetime | None
    remote_ended: datetime
    node_count: int | None
    app_id: str = ""
    exec_system_id: str = ""
    queue: str = ""
    owner: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """What the store knows about one poll's jobs, read at once before the plan.

    Attributes:
        decisions: every decision of a polled job, and every open match (matched, neither acted
            on nor cleared) of any job, by (job, rule).
        status_entries: for polled jobs, when each entered the status the poll saw it in, on its
            current visit to that status (a clock of an earlier visit, left before the job came
            back to the status, is not one).
        dry_warnings: the claims of dry-run warnings already logged, as (job, rule, claim key).
        breaker_open: the circuit breaker was open after the last poll that had cancels due.
        cancels_last_hour: real cancels sent (or maybe sent) in the rolling hour before now.
        ended: jobs that ended, as the store keeps them for the budgets' windows.
        budget_levels: each budget's level after the last poll (`ok`, `warn`, `over`; absent:
            `ok`), so its events are logged once per crossing, across restarts.
    """

    decisions: Mapping[Key, Decision] = field(default_factory=dict)
    status_entries: Mapping[str, datetime] = field(default_factory=dict)
    dry_warnings: frozenset[tuple[str, str, str]] = frozenset()
    breaker_open: bool = False
    cancels_last_hour: int = 0
    budget_levels: Mapping[str, str] = field(default_factory=dict)
    ended: tuple[EndedJob, ...] = ()

    def decision(self, job_uuid: str, rule: str) -> Decision | None:
        """The decision of (job, rule), or None when the rule never matched the job."""
        return self.decisions.get((job_uuid, rule))

    def open_matches(self) -> list[Decision]:
        """Decisions matched and neither acted on nor cleared, oldest match first."""
        found = [
            d
            for d in self.decisions.values()
            if d.first_match_at is not None and d.acted_at is None
        ]
        return sorted(found, key=lambda d: (d.first_match_at, d.job_uuid, d.rule))


@dataclass(frozen=True, slots=True)
class StateChanges:
    """What one plan writes, all at `at`; each list in the order it is applied.

    The SQLite store applies the deltas (`status_entries` ... `breaker_open`) with the same guards
    as its one-row methods (`record_match` starts a match only when none is open, ...); an
    in-memory store takes `decisions`, the decisions as the deltas leave them.

    Attributes:
        seen: (job, status) of every job a whole poll listed, recorded first (`state.batch.observe`:
            a job in another status than last time has started a new visit, and a job no longer
            listed has left); None when the changes come with no listing.
        status_entries: (job, status, entered) learnt from job histories this poll.
        matches: (job, rule) whose match starts now (the first, or the first since cleared).
        warned: (job, rule) whose current match is warned about now.
        cleared: (job, rule) whose open match is over.
        acted: (job, rule, outcome) of the skips decided now (exempt, dry run, breaker).
        dry_warnings: (job, rule, claim key) of dry-run warnings logged now.
        breaker_open: the breaker's new state, or None when unchanged.
        dry_cancels: (job, rule) a dry run would have cancelled now (only a dry run's memory
            counts them, for its rolling hour).
        decisions: every decision these changes touch, as they leave it.
        budget_levels: (budget, level) of the budgets whose level changed now.
    """

    at: datetime
    seen: tuple[tuple[str, str], ...] | None = None
    status_entries: tuple[tuple[str, str, datetime], ...] = ()
    matches: tuple[Key, ...] = ()
    warned: tuple[Key, ...] = ()
    cleared: tuple[Key, ...] = ()
    acted: tuple[tuple[str, str, str], ...] = ()
    dry_warnings: tuple[tuple[str, str, str], ...] = ()
    breaker_open: bool | None = None
    dry_cancels: tuple[Key, ...] = ()
    decisions: tuple[Decision, ...] = ()
    budget_levels: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        """True when there is nothing to write."""
        return self.seen is None and not (
            self.status_entries
            or self.matches
            or self.warned
            or self.cleared
            or self.acted
            or self.dry_warnings
            or self.dry_cancels
            or self.budget_levels
            or self.breaker_open is not None
        )
