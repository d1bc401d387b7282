"""Budgets across jobs: a group's usage over a window, and which of its jobs to cancel. Pure.

No I/O, never reads the clock (`now` is passed in). `assess` takes the budget, the jobs of this
poll, the runs that ended (from the state store) and `now`, and says where the group stands:

- usage of `node_hours` = `nodeCount` x the overlap of [`remoteStarted`, `remoteEnded` or now]
  with the window, summed over the group's active jobs and the jobs that ended inside it; `su`
  weighs each job's node hours by its charge rate (`charge_rates`; a job with no known rate is not
  charged, and counted in `uncharged`); a job without a start time or a node count has used
  nothing yet;
- `running_jobs` and `active_jobs` are counted from the poll;
- over a usage limit (usage has reached it), the group's jobs that have not started are the ones
  to cancel (and the running ones with `include_running`); over a count limit, the excess: the
  oldest `limit` jobs keep their place and the others go, jobs not running before running ones,
  newest first within each (the order the circuit breaker cuts in).

The verdicts it makes (`budget_verdicts`) are the rules': the planner carries them exactly like a
rule's (exemptions, silences, grace, dry run, the breaker, one cancel per job), the budget's name
as `rule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from watchdog.config.fields import compact_duration
from watchdog.jobs import Job
from watchdog.rules.evaluate import Verdict, compile_selectors

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from watchdog.config.budget_schema import BudgetConfig, ChargeRates, LimitKind
    from watchdog.rules.evaluate import Selector
    from watchdog.state.snapshot import EndedJob

__all__ = [
    "BudgetStatus",
    "CompiledBudget",
    "Run",
    "assess",
    "budget_verdicts",
    "compile_budgets",
    "describe_budget",
    "ended_run",
    "figure",
    "node_hours",
    "projection",
    "usage",
]

Level = Literal["ok", "warn", "over"]
UNITS: dict[str, str] = {
    "node_hours": "node hours",
    "su": "SU",
    "running_jobs": "running jobs",
    "active_jobs": "active jobs",
}
# A job in these statuses has left its nodes or never had them: never "running" for a budget.
_NOT_RUNNING_STARTED = frozenset({"ARCHIVING"})


@dataclass(frozen=True, slots=True)
class Run:
    """One job's use of nodes: an active job (`ended` None: it runs up to now) or one that
    ended (`ended` its `remoteEnded`)."""

    job: Job
    ended: datetime | None = None


@dataclass(frozen=True, slots=True)
class CompiledBudget:
    """A budget ready to assess: its group's selectors compiled."""

    name: str
    config: BudgetConfig
    selectors: tuple[Selector, ...]

    def holds(self, job: Job) -> bool:
        """Whether the job belongs to the budget's group."""
        return all(selector.holds(job) for selector in self.selectors)

    @property
    def kind(self) -> LimitKind:
        return self.config.limit.kind

    @property
    def limit(self) -> float:
        return self.config.limit.value


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one budget's group stands at one poll."""

    budget: CompiledBudget
    usage: float
    level: Level
    reason: str
    over: tuple[Job, ...]
    """The jobs to act on (cancel, or warn with `action: warn`), in the order to act; empty
    unless `level` is `over`."""
    uncharged: int = 0
    """Jobs of an su budget that used node hours at no known charge rate (not counted)."""

    @property
    def name(self) -> str:
        return self.budget.name

    @property
    def limit(self) -> float:
        return self.budget.limit

    @property
    def unit(self) -> str:
        return self.budget.kind


def ended_run(ended: EndedJob) -> Run:
    """An ended job as the store keeps it, as a run."""
    job = Job(
        uuid=ended.uuid,
        status=ended.status,
        name=ended.name,
        owner=ended.owner,
        app_id=ended.app_id,
        exec_system_id=ended.exec_system_id,
        queue=ended.queue,
        node_count=ended.node_count,
        tags=ended.tags,
        created=ended.created,
        remote_started=ended.remote_started,
    )
    return Run(job, ended.remote_ended)


def compile_budgets(configs: Iterable[BudgetConfig]) -> tuple[CompiledBudget, ...]:
    """Compile the configuration's budgets, in file order."""
    return tuple(CompiledBudget(c.name, c, compile_selectors(c.match)) for c in configs)


def node_hours(run: Run, start: datetime, end: datetime) -> float:
    """Node hours the run used inside [start, end]: 0 without a start time or a node count."""
    job = run.job
    if job.remote_started is None or not job.node_count or job.node_count < 0:
        return 0.0
    low = max(_utc(job.remote_started), start)
    high = min(_utc(run.ended) if run.ended is not None else end, end)
    seconds = (high - low).total_seconds()
    return job.node_count * seconds / 3600 if seconds > 0 else 0.0


def usage(
    budget: CompiledBudget, runs: Iterable[Run], now: datetime, rates: ChargeRates | None = None
) -> tuple[float, int]:
    """The group's usage in the budget's window ending `now`, and how many of its runs have no
    known charge rate (an su budget; they are not counted). A run is counted once per uuid."""
    start, now = _utc(budget.config.window_start(now)), _utc(now)
    total, uncharged = 0.0, 0
    for run in _unique(runs):
        if not budget.holds(run.job):
            continue
        used = node_hours(run, start, now)
        if budget.kind == "su":
            rate = rates.rate(run.job.exec_system_id, run.job.queue) if rates else None
            if rate is None:
                uncharged += used > 0
                continue
            used *= rate
        total += used
    return total, uncharged


def assess(
    budget: CompiledBudget,
    jobs: Sequence[Job],
    ended: Iterable[Run],
    now: datetime,
    rates: ChargeRates | None = None,
) -> BudgetStatus:
    """Where the budget's group stands: usage (or count), level, and the jobs over it.

    Args:
        budget: the compiled budget.
        jobs: every active job the poll saw.
        ended: runs that ended (`Run.ended` set), for a usage limit; a uuid also in `jobs` is
            counted once, as ended.
        now: the poll's time.
        rates: the charge rates, for an su limit.
    """
    group = [job for job in jobs if budget.holds(job)]
    kind, limit = budget.kind, budget.limit
    uncharged = 0
    if kind in {"node_hours", "su"}:
        used, uncharged = usage(budget, [*ended, *(Run(job) for job in group)], now, rates)
        over = used >= limit
        chosen = [
            j for j in group if not _started(j) or (budget.config.include_running and _running(j))
        ]
        targets = _in_cancel_order(chosen) if over else []
    else:
        counted = [j for j in group if _running(j)] if kind == "running_jobs" else group
        used = float(len(counted))
        over = used > limit
        by_age = sorted(counted, key=_age)
        targets = _in_cancel_order(by_age[int(limit) :]) if over else []
    warn_at = budget.config.warn_at
    level: Level = "over" if over else "warn" if warn_at and used >= warn_at * limit else "ok"
    return BudgetStatus(budget, used, level, _reason(budget, used), tuple(targets), uncharged)


def projection(
    status: BudgetStatus, jobs: Sequence[Job], now: datetime, rates: ChargeRates | None = None
) -> tuple[float | None, int]:
    """A usage budget's usage if every running job of its group ran on to its `maxMinutes`
    (an upper bound: what leaves a rolling window meanwhile is not taken off), and how many of
    those jobs have no `maxMinutes` (not projected). None for a count limit."""
    budget = status.budget
    if budget.kind not in {"node_hours", "su"}:
        return None, 0
    now = _utc(now)
    total, unknown = status.usage, 0
    for job in jobs:
        if not budget.holds(job) or not _running(job) or job.remote_started is None:
            continue
        if not job.max_minutes or job.max_minutes < 0:
            unknown += 1
            continue
        end = _utc(job.remote_started) + timedelta(minutes=job.max_minutes)
        more = node_hours(Run(job, end), now, end) if end > now else 0.0
        if budget.kind == "su":
            rate = rates.rate(job.exec_system_id, job.queue) if rates else None
            more = more * rate if rate is not None else 0.0
        total += more
    return total, unknown


def budget_verdicts(statuses: Iterable[BudgetStatus]) -> dict[str, list[Verdict]]:
    """Job uuid → the verdicts of the budgets over their limit that act on it, in file order."""
    found: dict[str, list[Verdict]] = {}
    for status in statuses:
        config = status.budget.config
        for job in status.over:
            verdict = Verdict(
                rule=status.name,
                matched=True,
                action=config.action,
                reason=status.reason,
                details=(f"budget {status.name}: {status.reason}",),
                grace=config.grace,
                dry_run=bool(config.dry_run),
            )
            found.setdefault(job.uuid, []).append(verdict)
    return found


def figure(value: float) -> str:
    """A usage figure as people read it: `2,013`, `12.5`, `0.3`."""
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def window_text(config: BudgetConfig) -> str:
    """`in the last 24h`, `since 2026-10-01 00:00 UTC`, or nothing for a count."""
    if config.window is not None:
        return f" in the last {compact_duration(config.window)}"
    if config.since is not None:
        return f" since {config.since.strftime('%Y-%m-%d %H:%M')} UTC"
    return ""


def describe_budget(budget: CompiledBudget) -> str:
    """A one-line summary for `tapis-watchdog check`: `sweep-daily: cancel queued jobs of app
    opensees* tagged sweep over 2,000 node hours in the last 24h`."""
    config = budget.config
    parts = {s.key: "|".join(s.values) for s in budget.selectors}
    targets = "jobs" if budget.kind not in {"node_hours", "su"} else "not-started jobs"
    if config.include_running:
        targets = "not-started and running jobs"
    if budget.kind not in {"node_hours", "su"}:
        targets = "the newest jobs"
    text = f"{budget.name}: {config.action}"
    if config.dry_run:
        text += " (dry run)"
    text += f" {targets}"
    for key, words in (
        ("app", "of app"),
        ("exec_system", "on"),
        ("owner", "owned by"),
        ("name", "named"),
        ("queue", "in queue"),
        ("tags_any", "tagged"),
    ):
        if key in parts:
            text += f" {words} {parts[key]}"
    text += f" over {figure(budget.limit)} {UNITS[budget.kind]}{window_text(config)}"
    if config.warn_at is not None:
        text += f", warn at {figure(config.warn_at * 100)}%"
    if config.grace is not None:
        text += f", after a {compact_duration(config.grace)} grace"
    return text


def _reason(budget: CompiledBudget, used: float) -> str:
    unit = UNITS[budget.kind]
    window = window_text(budget.config)
    return f"{budget.name}: {figure(used)} of {figure(budget.limit)} {unit}{window}"


def _started(job: Job) -> bool:
    return job.remote_started is not None or job.status in {"RUNNING", *_NOT_RUNNING_STARTED}


def _running(job: Job) -> bool:
    return job.status == "RUNNING" or (
        job.remote_started is not None and job.status not in _NOT_RUNNING_STARTED
    )


def _age(job: Job) -> tuple[bool, datetime, str]:
    """Oldest first; a job whose creation time is unknown counts as the newest."""
    created = _utc(job.created) if job.created is not None else datetime.max.replace(tzinfo=UTC)
    return (job.created is None, created, job.uuid)


def _in_cancel_order(jobs: Iterable[Job]) -> list[Job]:
    """Jobs not running before running ones, newest first within each."""
    newest_first = sorted(jobs, key=_age, reverse=True)
    return [j for j in newest_first if not _running(j)] + [j for j in newest_first if _running(j)]


def _unique(runs: Iterable[Run]) -> list[Run]:
    """One run per uuid, the ended one when a job is seen both ways."""
    kept: dict[str, Run] = {}
    for run in runs:
        held = kept.get(run.job.uuid)
        if held is None or (held.ended is None and run.ended is not None):
            kept[run.job.uuid] = run
    return list(kept.values())


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
