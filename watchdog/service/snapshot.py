"""What the running daemon shows the status page: the last good poll, whole, and its own state.

The daemon keeps one `PollSnapshot` (replaced, never changed, after each good poll) and answers
`Daemon.live_state()` with a `LiveState`. The page reads both from its request threads: they are
frozen, so a reader always sees one poll whole, and nothing here calls Tapis.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from watchdog.config.model import Config
    from watchdog.jobs import Job
    from watchdog.rules.evaluate import CompiledRule

__all__ = ["LiveState", "PollSnapshot"]


@dataclass(frozen=True, slots=True)
class PollSnapshot:
    """The jobs one good poll saw, the time it evaluated them at, and the rules it used."""

    at: datetime
    jobs: tuple[Job, ...]
    rules: tuple[CompiledRule, ...]
    by_uuid: Mapping[str, Job] = field(init=False, repr=False)
    by_status: Mapping[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Built once per poll, so each page request is a dictionary lookup, not a scan.
        object.__setattr__(self, "by_uuid", {job.uuid: job for job in self.jobs})
        object.__setattr__(self, "by_status", dict(Counter(job.status for job in self.jobs)))


@dataclass(frozen=True, slots=True)
class LiveState:
    """The running daemon as the page sees it."""

    config: Config
    rules: tuple[CompiledRule, ...]
    dry_run: bool
    snapshot: PollSnapshot | None
    next_poll_at: datetime | None
