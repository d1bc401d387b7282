"""`tapis-watchdog budgets -c FILE`: where each budget stands now, read from Tapis. Acts on nothing.

It lists the identity's active jobs as a poll does and, for usage budgets, searches the jobs that
ended inside the longest window (`poll.ended`), then assesses each budget exactly as the daemon's
plan does (`rules.budgets.assess`): usage (or count), limit, what remains, and for a usage budget
a projection with every running job of the group running on to its `maxMinutes`. It writes
nothing, not even to the state store.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from watchdog.config.model import load_config
from watchdog.errors import EXIT_OK, UsageError
from watchdog.jobs import SUMMARY_FIELDS
from watchdog.rules.budgets import (
    UNITS,
    BudgetStatus,
    assess,
    compile_budgets,
    ended_run,
    figure,
    projection,
    window_text,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from watchdog.config.model import Config
    from watchdog.jobs import Job
    from watchdog.rules.budgets import CompiledBudget
    from watchdog.state.snapshot import EndedJob

__all__ = ["budget_lines", "cmd_budgets"]


def _out(text: str) -> None:
    print(text, file=sys.stdout, flush=True)  # noqa: T201 - the command's own output


def cmd_budgets(args: argparse.Namespace) -> int:
    if not args.config:
        raise UsageError("no configuration: pass -c FILE or set TAPIS_WATCHDOG_CONFIG")
    config = load_config(args.config)
    budgets = compile_budgets(config.budgets)
    if not budgets:
        _out(f"{args.config}: no budgets")
        return EXIT_OK
    now = datetime.now(UTC)
    statuses, jobs = anyio.run(_assess, config, budgets, now)
    for line in budget_lines(statuses, jobs, now, config, as_json=args.json):
        _out(line)
    return EXIT_OK


async def _assess(
    config: Config, budgets: Sequence[CompiledBudget], now: datetime
) -> tuple[list[BudgetStatus], tuple[Job, ...]]:
    from watchdog.act.ended import window_start  # noqa: PLC0415 - only this command needs them
    from watchdog.poll.ended import search_ended  # noqa: PLC0415
    from watchdog.poll.scan import poll_jobs  # noqa: PLC0415
    from watchdog.tapis.client import TapisClient  # noqa: PLC0415

    client = TapisClient(config.tapis)
    try:
        await client.login()
        poll = config.poll
        listed = await poll_jobs(
            client,
            statuses=poll.statuses,
            list_type=poll.list_type,
            page_size=poll.page_size,
            fields=SUMMARY_FIELDS,
        )
        start = window_start(budgets, now)
        ended: tuple[EndedJob, ...] = ()
        if start is not None:
            ended = await search_ended(
                client, start, list_type=poll.list_type, page_size=poll.page_size
            )
    finally:
        await client.aclose()
    runs = [ended_run(job) for job in ended]
    rates = config.charge_rates
    return [assess(b, listed.jobs, runs, now, rates) for b in budgets], listed.jobs


def budget_lines(
    statuses: Sequence[BudgetStatus],
    jobs: Sequence[Job],
    now: datetime,
    config: Config,
    *,
    as_json: bool,
) -> list[str]:
    """One line per budget: text for people, or a JSON object per line."""
    lines: list[str] = []
    for status in statuses:
        projected, unknown = projection(status, jobs, now, config.charge_rates)
        remaining = max(status.limit - status.usage, 0.0)
        if as_json:
            record: dict[str, Any] = {
                "budget": status.name,
                "unit": status.unit,
                "usage": round(status.usage, 3),
                "limit": status.limit,
                "remaining": round(remaining, 3),
                "projected": None if projected is None else round(projected, 3),
                "not_projected": unknown,
                "uncharged": status.uncharged,
                "level": status.level,
                "acts_on": len(status.over),
            }
            lines.append(json.dumps(record, sort_keys=False))
            continue
        unit = UNITS[status.unit]
        text = (
            f"{status.name}: {figure(status.usage)} of {figure(status.limit)} {unit}"
            f"{window_text(status.budget.config)}, {figure(remaining)} remaining"
        )
        if projected is not None:
            text += f", {figure(projected)} projected with running jobs at their maxMinutes"
        if unknown:
            text += f" ({unknown} without maxMinutes not projected)"
        if status.uncharged:
            text += f"; {status.uncharged} jobs at no known charge rate not counted"
        text += f" [{status.level}"
        if status.over:
            text += f": {status.budget.config.action}s {len(status.over)} jobs"
        lines.append(text + "]")
    return lines
