"""The schema of `budgets:` and `charge_rates:`: limits on what a group of jobs uses together.

A budget is a group of jobs (the rules' `match` selectors, status aside: a budget counts every
active job of its group), a window (rolling, `window: 24h`, or fixed, `since: <UTC time>`), and one
limit: `node_hours` or `su` (used inside the window), `running_jobs` or `active_jobs` (counted at
each poll). `charge_rates` turns node hours into service units: exec system → queue glob → SU per
node hour, the first glob in file order that matches the job's queue.

Budget names share one namespace with rule names (a cancel's `rule` names either, and so does a
silence's `--rule`), so a name used twice is refused across both lists.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import field_validator, model_validator

from watchdog.config.fields import (
    Flag,
    Loc,
    PositiveDuration,
    PositiveInt,
    PositiveNumber,
    StrictModel,
    check_description,
    check_name,
    problem,
    problems,
    show,
)
from watchdog.config.rule_schema import Match

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "USAGE_UNITS",
    "BudgetConfig",
    "BudgetLimit",
    "ChargeRates",
    "LimitKind",
    "budget_problems",
]

LimitKind = Literal["node_hours", "su", "running_jobs", "active_jobs"]
LIMIT_KINDS: tuple[LimitKind, ...] = ("node_hours", "su", "running_jobs", "active_jobs")
USAGE_UNITS: frozenset[str] = frozenset({"node_hours", "su"})


class BudgetLimit(StrictModel):
    """Exactly one of `node_hours`, `su` (numbers > 0), `running_jobs`, `active_jobs` (whole
    numbers > 0)."""

    node_hours: PositiveNumber | None = None
    su: PositiveNumber | None = None
    running_jobs: PositiveInt | None = None
    active_jobs: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _one(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise problem(f"expected a mapping like {{node_hours: 2000}}, got {show(data)}")
        given = [key for key in LIMIT_KINDS if data.get(key) is not None]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise problem(f"give exactly one of {', '.join(LIMIT_KINDS)} ({found})")
        return data

    @property
    def kind(self) -> LimitKind:
        return next(key for key in LIMIT_KINDS if getattr(self, key) is not None)

    @property
    def value(self) -> float:
        number: float = getattr(self, self.kind)
        return number


class BudgetConfig(StrictModel):
    """One budget as written in the configuration."""

    name: str
    description: str | None = None
    match: Match = Match()
    window: PositiveDuration | None = None
    since: datetime | None = None
    limit: BudgetLimit
    warn_at: float | None = None
    """A fraction in (0, 1): warn once as usage crosses it (written `80%` or `0.8`)."""
    action: Literal["cancel", "warn"]
    include_running: Flag = False
    grace: PositiveDuration | None = None
    dry_run: Flag | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> str:
        return check_name(value)

    @field_validator("description", mode="before")
    @classmethod
    def _check_description(cls, value: Any) -> Any:
        return check_description(value)

    @field_validator("match", mode="before")
    @classmethod
    def _check_match(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict) and value.get("status") is not None:
            raise problem(
                "a budget counts every active job of its group: status is not a selector here",
                at=("status",),
            )
        return value

    @field_validator("since", mode="before")
    @classmethod
    def _check_since(cls, value: Any) -> datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else None
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                moment = None
        if moment is None or moment.tzinfo is None:
            expected = 'expected a UTC time like "2026-10-01T00:00:00Z"'
            raise problem(f"{expected}, got {show(value)}")
        return moment.astimezone(UTC)

    @field_validator("warn_at", mode="before")
    @classmethod
    def _check_warn_at(cls, value: Any) -> float | None:
        if value is None:
            return None
        number: float | None = None
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                number = float(value.strip()[:-1]) / 100
            except ValueError:
                number = None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        if number is None or not 0 < number < 1:
            raise problem(f'expected a share below the limit like "80%" or 0.8, got {show(value)}')
        return number

    @field_validator("action", mode="before")
    @classmethod
    def _check_action(cls, value: Any) -> Any:
        if value not in ("cancel", "warn"):
            raise problem(f'expected "cancel" or "warn", got {show(value)}')
        return value

    @model_validator(mode="after")
    def _check_window(self) -> BudgetConfig:
        usage = self.limit.kind in USAGE_UNITS
        if usage and (self.window is None) == (self.since is None):
            raise problem("a node_hours or su limit needs a window or a since, not both", at=())
        if not usage and (self.window is not None or self.since is not None):
            at: Loc = ("window",) if self.window is not None else ("since",)
            raise problem(f"{self.limit.kind} is counted at each poll: it takes no window", at=at)
        if self.include_running and not usage:
            raise problem(
                "applies to node_hours and su limits (a count limit cancels its excess)",
                at=("include_running",),
            )
        return self

    def window_start(self, now: datetime) -> datetime:
        """Where the window begins at `now` (a usage limit; a count limit's is `now`)."""
        if self.since is not None:
            return self.since
        return now - (self.window or timedelta(0))


class ChargeRates(StrictModel):
    """`charge_rates`: exec system → queue glob → SU per node hour."""

    systems: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _read(cls, data: Any) -> Any:
        if data is None:
            return {"systems": ()}
        if not isinstance(data, dict):
            raise problem(f"expected a mapping of exec system to queues, got {show(data)}")
        if set(data) == {"systems"}:
            return data
        found: list[tuple[Loc, str]] = []
        systems: list[tuple[str, tuple[tuple[str, float], ...]]] = []
        for system, queues in data.items():
            if not isinstance(queues, dict) or not queues:
                found.append(
                    ((system,), f"expected a mapping of queue to rate, got {show(queues)}")
                )
                continue
            rates: list[tuple[str, float]] = []
            for queue, rate in queues.items():
                if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate >= 0:
                    found.append(((system, queue), f"expected a number >= 0, got {show(rate)}"))
                    continue
                rates.append((str(queue), float(rate)))
            systems.append((str(system), tuple(rates)))
        if found:
            raise problems(found)
        return {"systems": tuple(systems)}

    def rate(self, exec_system: str, queue: str) -> float | None:
        """SU per node hour of a job on that system and queue, or None: no rate is known."""
        for system, queues in self.systems:
            if system != exec_system:
                continue
            for glob, rate in queues:
                if fnmatch.fnmatchcase(queue, glob):
                    return rate
        return None

    def __bool__(self) -> bool:
        return bool(self.systems)


def budget_problems(
    budgets: Sequence[BudgetConfig], rule_names: Mapping[str, int], rates: ChargeRates
) -> list[tuple[Loc, str]]:
    """Budget names unique among rules and budgets; an su limit needs `charge_rates`."""
    found: list[tuple[Loc, str]] = []
    first: dict[str, int] = {}
    for index, budget in enumerate(budgets):
        where: Loc = ("budgets", index, "name")
        name = budget.name
        if name in rule_names:
            found.append((where, f"{show(name)} is also the name of rules[{rule_names[name]}]"))
        elif name in first:
            found.append(
                (where, f"duplicate budget name {show(name)} (also budgets[{first[name]}])")
            )
        first.setdefault(name, index)
        if budget.limit.kind == "su" and not rates:
            found.append((("budgets", index, "limit", "su"), "an su limit needs charge_rates"))
    return found
