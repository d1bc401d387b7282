"""The rows of the summary (`service/summary.py`): plain frozen data, one class per list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "CancelRow",
    "GraceRow",
    "HandCancel",
    "Health",
    "SkipRow",
    "TimelineHour",
    "WarningRow",
]


@dataclass(frozen=True, slots=True)
class Health:
    """Is the watchdog watching: its last good poll, the next, failures since, breaker, dry run."""

    last_good_poll: datetime | None
    next_poll: datetime | None
    poll_interval_s: float
    failures_since: int
    breaker_open: bool
    dry_run: bool
    healthy: bool
    live: bool


@dataclass(frozen=True, slots=True)
class GraceRow:
    """A running grace period: the job is cancelled at `deadline` if it still matches."""

    job_uuid: str
    job_name: str
    rule: str
    started_at: datetime
    deadline: datetime
    dry_run: bool
    reason: str


@dataclass(frozen=True, slots=True)
class CancelRow:
    """One cancel by a rule, from request to outcome (`pending` until one is known)."""

    job_uuid: str
    job_name: str
    rule: str
    outcome: str
    requested_at: datetime | None
    finished_at: datetime | None
    final_status: str | None
    latency_s: float | None
    reason: str
    error: str | None
    problem: bool


@dataclass(frozen=True, slots=True)
class SkipRow:
    """A cancel that was due and not sent, and why (dry run, exempt, breaker, ...)."""

    at: datetime
    job_uuid: str
    job_name: str
    rule: str
    why: str
    reason: str


@dataclass(frozen=True, slots=True)
class WarningRow:
    """A `job_warned`: a warn rule matched, or a grace period started."""

    at: datetime
    job_uuid: str
    job_name: str
    rule: str
    reason: str
    dry_run: bool


@dataclass(frozen=True, slots=True)
class HandCancel:
    """A cancel no rule made."""

    at: datetime
    job_uuid: str
    job_name: str
    by: str
    final_status: str | None
    latency_s: float | None


@dataclass(frozen=True, slots=True)
class TimelineHour:
    """One hour of the 24-hour timeline."""

    start: datetime
    jobs_watched: int
    matches: int
    cancels: int
