"""The daily digest: the report of the last 24 hours, once a day, at a local time, through Apprise.

A notification target with `digest: "07:30"` gets one message per local day (its `timezone`, else
the machine's) at or after that time. The day is claimed in the state store before anything is
sent (`claim_notification` with the rule `digest#N` and the event `digest:YYYY-MM-DD`), so a day's
digest goes out at most once, across restarts and reloads; a daemon down at 07:30 sends it when it
comes back, the same day. With `skip_empty`, a day on which nothing happened (no match, warning,
cancel or failed poll in the 24 hours) is claimed and skipped.

`DigestScheduler.tick` does one check at the time its clock gives, so tests drive it with their own
clock; `run` calls it every `check_every` seconds in a worker thread (Apprise is synchronous and a
target may hang: each send is bounded by `send_timeout`). Outcomes are events: `digest_sent` (with
`target`, `day`, `skipped`), and a failure is a `tapis_error` with operation `notify`, as for the
other notifications; a target is named by scheme and position, never by its URL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

import anyio

from watchdog.service.notify import Message, load_target, send_message
from watchdog.service.render import render_summary

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import tzinfo

    import apprise

    from watchdog.config.model import NotifyTarget
    from watchdog.events import EventLog
    from watchdog.service.summary import Summary
    from watchdog.state.store import StateStore

__all__ = ["DigestScheduler", "DigestTarget", "digest_targets"]

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class DigestTarget:
    """One target's digest: when, in which time zone, and where (an Apprise object)."""

    index: int
    label: str
    at: time
    tz: tzinfo | None
    skip_empty: bool
    apprise: apprise.Apprise

    def local_day(self, now: datetime) -> tuple[date, bool]:
        """The local day at `now`, and whether its digest time has come."""
        local = now.astimezone(self.tz)
        return local.date(), local.time() >= self.at

    @property
    def claim_rule(self) -> str:
        return f"digest#{self.index}"


def digest_targets(targets: Sequence[NotifyTarget]) -> list[DigestTarget]:
    """The digests of the configured targets (numbered from 1, as in `notify[0]` + 1).

    Raises:
        ValueError: a URL is not a valid Apprise URL (the message never holds it).
    """
    found = []
    for index, target in enumerate(targets, start=1):
        if target.digest is None:
            continue
        label, service = load_target(target.url.get_secret_value(), index)
        found.append(
            DigestTarget(index, label, target.digest, target.tzinfo, target.skip_empty, service)
        )
    return found


def digest_message(summary: Summary, day: date) -> Message:
    """The digest of one day: a title that says the most important figures, the text report."""
    cancels = len(summary.cancels)
    problems = len(summary.problems)
    title = f"tapis-watchdog digest {day.isoformat()}: {cancels} cancels"
    if problems:
        title += f", {problems} need a look"
    if summary.grace:
        title += f", {len(summary.grace)} in grace"
    if not summary.health.healthy:
        title += ", NOT HEALTHY"
    notify_type = "failure" if problems or not summary.health.healthy else "info"
    return Message("digest", title, render_summary(summary, "text"), notify_type)


class DigestScheduler:
    """Sends each target's digest once per local day."""

    def __init__(
        self,
        targets: Sequence[DigestTarget],
        *,
        store: StateStore,
        events: EventLog,
        summarize: Callable[[datetime, timedelta], Summary],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        send_timeout: float = 30.0,
    ) -> None:
        self.targets = tuple(targets)
        self._store = store
        self._events = events
        self._summarize = summarize
        self._clock = clock
        self._send_timeout = send_timeout
        self._lock = threading.Lock()

    def tick(self) -> int:
        """Send the digests that are due now and not yet claimed; returns how many were sent."""
        with self._lock:
            now = self._clock()
            sent = 0
            for target in self.targets:
                day, due = target.local_day(now)
                if not due:
                    continue
                key = f"digest:{day.isoformat()}"
                if not self._store.claim_notification(None, target.claim_rule, key, now):
                    continue
                sent += self._send(target, day, now)
            return sent

    def _send(self, target: DigestTarget, day: date, now: datetime) -> int:
        try:
            summary = self._summarize(now, WINDOW)
        except Exception as exc:
            self._failed(target, f"digest {day}: cannot build the report: {exc}")
            return 0
        if target.skip_empty and not summary.eventful:
            self._events.emit(
                "info", "digest_sent", target=target.label, day=day.isoformat(), skipped=True
            )
            return 0
        error = send_message(
            target.label, target.apprise, digest_message(summary, day), self._send_timeout
        )
        if error is not None:
            self._failed(target, f"digest {day}: {error}")
            return 0
        self._events.emit(
            "info",
            "digest_sent",
            target=target.label,
            day=day.isoformat(),
            skipped=False,
            cancels=len(summary.cancels),
            problems=len(summary.problems),
        )
        return 1

    def _failed(self, target: DigestTarget, error: str) -> None:
        self._events.tapis_error(
            operation="notify", http_status=None, error=f"{target.label}: {error}", retry_in_s=None
        )

    async def run(self, check_every: float = 30.0) -> None:
        """Check every `check_every` seconds until cancelled."""
        while True:
            await anyio.to_thread.run_sync(self.tick, abandon_on_cancel=True)
            await anyio.sleep(check_every)
