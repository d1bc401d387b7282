"""Before a poll's plan: bring the kept ended jobs up to date for the budgets' windows.

The first time (or when a budget's window now reaches further back than the searches have
covered) the search starts at the earliest window start, so the window is filled on first start;
after that, at the last look less a margin for clocks and late updates. What is found is kept in
the state store with the span covered (`state.ended`), so a restart neither loses usage nor counts
a job twice. A failed search is a `tapis_error`; the poll goes on with what was kept, and the next
one searches the same span again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from watchdog.config.budget_schema import USAGE_UNITS
from watchdog.errors import PollError, TapisError
from watchdog.poll.ended import search_ended

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from watchdog.events import EventLog
    from watchdog.rules.budgets import CompiledBudget
    from watchdog.state.snapshot import EndedJob
    from watchdog.state.store import StateStore
    from watchdog.tapis.client import TapisClient

__all__ = ["MARGIN", "refresh_ended"]

MARGIN = timedelta(minutes=5)
"""How far before the last look a search starts again (jobs are kept once by uuid)."""


def window_start(budgets: Sequence[CompiledBudget], now: datetime) -> datetime | None:
    """The earliest start of a usage budget's window at `now`, or None: no usage budget."""
    starts = [b.config.window_start(now) for b in budgets if b.kind in USAGE_UNITS]
    return min(starts) if starts else None


async def refresh_ended(
    client: TapisClient,
    store: StateStore,
    events: EventLog,
    budgets: Sequence[CompiledBudget],
    now: datetime,
    *,
    list_type: str,
    page_size: int,
) -> tuple[EndedJob, ...]:
    """Search the ended jobs not yet covered, keep them, and return those inside the windows."""
    start = window_start(budgets, now)
    if start is None:
        return ()
    covered = store.ended_coverage()
    since = start
    if covered is not None and covered[0] <= start:
        since = max(start, covered[1] - MARGIN)
    try:
        found = await search_ended(client, since, list_type=list_type, page_size=page_size)
    except (PollError, TapisError) as exc:
        events.tapis_error(
            operation="search_ended_jobs",
            http_status=exc.http_status,
            error=exc,
            retry_in_s=None,
        )
    else:
        low = since if covered is None or covered[0] > start else covered[0]
        store.record_ended(found, (min(low, since), now))
        store.prune_ended(start)
    return store.ended_since(start)
