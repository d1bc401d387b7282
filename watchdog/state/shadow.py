"""A dry run's memory: the state store as a real run would leave it, kept in this process only.

A dry run decides from the real store's snapshot, as a real run would, but what its plans change
(matches, warnings, clears, skips, the breaker, the cancels it would have sent) goes into a
`ShadowStore`, never into the file. So a dry run leaves the state a real run relies on as it was,
and each dry run started afresh names every would-be cancel and warning again; within one long dry
run, each is named once, as a real run would act once.

What a dry run does write to the file: status clocks learnt from job histories (facts read from
Tapis, the same whichever run reads them), the jobs it saw and their statuses, and its events in the
audit trail, each marked `dry_run`.

Skips the real store remembers (a real run's `exempt`, `dry_run`, `circuit_open` or `unavailable`
outcomes) are a real run's record of what it logged: a dry run sees them as `reconsider`, so it
names those jobs again instead of staying silent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from watchdog.state.snapshot import (
    RECONSIDER,
    Decision,
    StateChanges,
    StateSnapshot,
    is_transient,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from watchdog.state.store import StateStore

HOUR = timedelta(hours=1)


@dataclass
class ShadowStore:
    """The `snapshot` / `apply` pair of `StateStore`, with a dry run's changes kept in memory."""

    store: StateStore
    decisions: dict[tuple[str, str], Decision] = field(default_factory=dict)
    dry_warnings: set[tuple[str, str, str]] = field(default_factory=set)
    breaker_open: bool | None = None
    cancels_at: list[datetime] = field(default_factory=list)
    budget_levels: dict[str, str] = field(default_factory=dict)

    def snapshot(self, statuses: Mapping[str, str], now: datetime) -> StateSnapshot:
        """The real store's snapshot, with this dry run's own changes laid over it."""
        real = self.store.snapshot(statuses, now)
        decisions = {key: _reconsidered(d) for key, d in real.decisions.items()}
        decisions.update(self.decisions)
        recent = sum(1 for at in self.cancels_at if at > now - HOUR)
        return StateSnapshot(
            decisions=decisions,
            status_entries=real.status_entries,
            dry_warnings=frozenset(self.dry_warnings),
            breaker_open=real.breaker_open if self.breaker_open is None else self.breaker_open,
            cancels_last_hour=real.cancels_last_hour + recent,
            budget_levels={**real.budget_levels, **self.budget_levels},
        )

    def apply(self, changes: StateChanges) -> None:
        """The listing and status clocks go to the real store; the rest stays in this memory."""
        facts = StateChanges(
            at=changes.at, seen=changes.seen, status_entries=changes.status_entries
        )
        self.store.apply(facts)
        for decision in changes.decisions:
            self.decisions[decision.job_uuid, decision.rule] = decision
        self.dry_warnings.update(changes.dry_warnings)
        if changes.breaker_open is not None:
            self.breaker_open = changes.breaker_open
        self.cancels_at.extend(changes.at for _ in changes.dry_cancels)
        self.budget_levels.update(changes.budget_levels)


def _reconsidered(decision: Decision) -> Decision:
    if is_transient(decision.outcome):
        return replace(decision, outcome=RECONSIDER)
    return decision
