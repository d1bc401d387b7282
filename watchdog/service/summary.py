"""The morning summary: what was watched, cancelled, confirmed, and what is about to be cancelled.

`build_summary` reads it from the state store (the audit trail, the open decisions, the last poll)
and, when the daemon is running, from its live state (the last poll's jobs, its next poll). The
status page, `tapis-watchdog report` and the daily digest all render the one `Summary`, so they
agree with each other and with `history`, which reads the same audit trail.

Hand cancels are the cancels no rule made: `tapis-watchdog cancel` (its events carry
`manual: true` and `by`), and a watched job that Tapis reports CANCELLED after it left the watched
statuses by itself (`job_cleared` with status CANCELLED).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from watchdog.service.silence_rows import SilenceRow, silence_rows
from watchdog.service.summary_rows import (
    CancelRow,
    GraceRow,
    HandCancel,
    Health,
    SkipRow,
    TimelineHour,
    WarningRow,
)
from watchdog.state.batch import BREAKER_META_KEY
from watchdog.state.schema import to_db

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from watchdog.config.model import OfflineConfig
    from watchdog.rules.evaluate import CompiledRule
    from watchdog.service.snapshot import LiveState
    from watchdog.state.reader import StateReader

__all__ = [
    "CancelRow",
    "GraceRow",
    "HandCancel",
    "Health",
    "SilenceRow",
    "SkipRow",
    "Summary",
    "TimelineHour",
    "WarningRow",
    "build_summary",
]

_HEALTHY_INTERVALS = 3
_HOUR_US = 3_600_000_000
_CANCEL_EVENTS = ("job_cancel_requested", "job_cancelled", "job_cancel_unconfirmed")
_LISTED = (*_CANCEL_EVENTS, "job_cancel_failed", "job_cancel_skipped", "job_warned", "job_cleared")


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything the page, the report and the digest show, for one window of time."""

    generated_at: datetime
    since: datetime
    health: Health
    jobs_watched: int
    jobs_by_status: Mapping[str, int]
    grace: tuple[GraceRow, ...]
    cancels: tuple[CancelRow, ...]
    skipped: tuple[SkipRow, ...]
    warnings: tuple[WarningRow, ...]
    hand_cancels: tuple[HandCancel, ...]
    timeline: tuple[TimelineHour, ...]
    counts: Mapping[str, int] = field(default_factory=dict)
    silences: tuple[SilenceRow, ...] = ()
    """Silences in force (first), then those that ended in the window."""

    @property
    def problems(self) -> tuple[CancelRow, ...]:
        """Cancels that failed or were never confirmed."""
        return tuple(row for row in self.cancels if row.problem)

    @property
    def eventful(self) -> bool:
        """Whether anything happened in the window (for `skip_empty` digests)."""
        keys = ("rule_matched", "job_warned", "job_cancel_requested", "job_cancel_failed")
        return bool(self.grace or self.hand_cancels or any(self.counts.get(k) for k in keys)) or (
            self.counts.get("poll_failed", 0) > 0
        )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class _Names:
    """Job names from the events (`job_name`) and from the last poll's jobs."""

    def __init__(self, live: LiveState | None) -> None:
        snapshot = live.snapshot if live is not None else None
        self._jobs = snapshot.by_uuid if snapshot is not None else {}
        self._seen: dict[str, str] = {}

    def learn(self, event: Mapping[str, Any]) -> None:
        name = event.get("job_name")
        if isinstance(name, str) and name:
            self._seen[str(event.get("job_uuid"))] = name

    def __call__(self, uuid: str) -> str:
        job = self._jobs.get(uuid)
        return job.name if job is not None and job.name else self._seen.get(uuid, "")


def _cancels(events: Sequence[Mapping[str, Any]], names: _Names) -> tuple[CancelRow, ...]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        name, rule = event.get("event"), _text(event.get("rule"))
        if event.get("manual") is True or name not in (*_CANCEL_EVENTS, "job_cancel_failed"):
            continue
        uuid = _text(event.get("job_uuid"))
        at = _time(event.get("timestamp"))
        row = rows.setdefault(
            (uuid, rule),
            {"outcome": "pending", "requested_at": None, "finished_at": None, "reason": ""},
        )
        if name == "job_cancel_requested":
            row.update(requested_at=row["requested_at"] or at, reason=_text(event.get("reason")))
            continue
        row.update(finished_at=at, reason=row["reason"] or _text(event.get("reason")))
        if name == "job_cancelled":
            row.update(
                outcome="cancelled",
                final_status=event.get("final_status"),
                latency_s=_number(event.get("latency_s")),
            )
        elif name == "job_cancel_unconfirmed":
            row.update(outcome="unconfirmed")
        else:
            row.update(outcome="failed", error=_text(event.get("error")) or None)
    result = [
        CancelRow(
            job_uuid=uuid,
            job_name=names(uuid),
            rule=rule,
            outcome=row["outcome"],
            requested_at=row["requested_at"],
            finished_at=row["finished_at"],
            final_status=row.get("final_status"),
            latency_s=row.get("latency_s"),
            reason=row["reason"],
            error=row.get("error"),
            problem=row["outcome"] in {"unconfirmed", "failed"},
        )
        for (uuid, rule), row in rows.items()
    ]
    epoch = datetime.min.replace(tzinfo=UTC)
    result.sort(key=lambda r: r.requested_at or r.finished_at or epoch, reverse=True)
    return tuple(result)


def _hand_cancels(events: Sequence[Mapping[str, Any]], names: _Names) -> tuple[HandCancel, ...]:
    found: dict[str, HandCancel] = {}
    for event in events:
        name, uuid = event.get("event"), _text(event.get("job_uuid"))
        at = _time(event.get("timestamp"))
        if at is None:
            continue
        if event.get("manual") is True and name in _CANCEL_EVENTS:
            final = event.get("final_status") if name == "job_cancelled" else None
            earlier = found.get(uuid)
            found[uuid] = HandCancel(
                at=earlier.at if earlier is not None else at,
                job_uuid=uuid,
                job_name=names(uuid),
                by=f"{_text(event.get('by')) or 'someone'} (tapis-watchdog cancel)",
                final_status=_text(final) or (earlier.final_status if earlier else None),
                latency_s=_number(event.get("latency_s")),
            )
        elif name == "job_cleared" and event.get("status") == "CANCELLED":
            found.setdefault(
                uuid,
                HandCancel(at, uuid, names(uuid), "outside the watchdog", "CANCELLED", None),
            )
    return tuple(sorted(found.values(), key=lambda h: h.at, reverse=True))


def _grace(
    reader: StateReader,
    rules: Sequence[CompiledRule],
    dry_run: bool,
    warned: Mapping[tuple[str, str], str],
    names: _Names,
) -> tuple[GraceRow, ...]:
    by_name = {rule.name: rule for rule in rules}
    rows: list[GraceRow] = []
    for decision in reader.open_matches():
        rule = by_name.get(decision.rule)
        if rule is None or rule.grace is None or rule.action != "cancel":
            continue
        dry = dry_run or bool(rule.dry_run)
        # As the daemon counts it: a live rule's grace starts with the warning that reached
        # Tapis; a dry-run rule's at its first match.
        started = decision.first_match_at if dry else decision.warned_at
        if started is None:
            continue
        rows.append(
            GraceRow(
                job_uuid=decision.job_uuid,
                job_name=names(decision.job_uuid),
                rule=decision.rule,
                started_at=started,
                deadline=started + rule.grace,
                dry_run=dry,
                reason=warned.get((decision.job_uuid, decision.rule), ""),
            )
        )
    rows.sort(key=lambda r: (r.deadline, r.job_uuid, r.rule))
    return tuple(rows)


def _timeline(reader: StateReader, now: datetime) -> tuple[TimelineHour, ...]:
    end_hour = to_db(now) // _HOUR_US
    first = end_hour - 23
    start = datetime.fromtimestamp(first * 3600, UTC)
    rows = reader.hourly(start, ("poll_completed", "rule_matched", "job_cancel_requested"))
    hours = {h: [0, 0, 0] for h in range(first, end_hour + 1)}
    for hour, event, count, jobs_seen in rows:
        bucket = hours.get(hour)
        if bucket is None:
            continue
        if event == "poll_completed":
            bucket[0] = max(bucket[0], int(jobs_seen or 0))
        elif event == "rule_matched":
            bucket[1] += count
        else:
            bucket[2] += count
    return tuple(
        TimelineHour(datetime.fromtimestamp(h * 3600, UTC), *values)
        for h, values in sorted(hours.items())
    )


def build_summary(
    reader: StateReader,
    config: OfflineConfig,
    rules: Sequence[CompiledRule],
    *,
    now: datetime,
    since: timedelta,
    live: LiveState | None = None,
) -> Summary:
    """The summary of the window `now - since` .. `now` (the timeline always covers 24 hours).

    Without `live` (offline, for `report`), the last poll and dry run come from the store.

    Raises:
        StateError: the store cannot be read.
    """
    start = now - since
    names = _Names(live)
    events = reader.events_since(start, names=_LISTED)
    for event in events:
        names.learn(event)
    counts = reader.count_since(start)
    last_poll = reader.last_poll()
    snapshot = live.snapshot if live is not None else None
    if live is not None:
        dry_run = live.dry_run
    else:
        started = reader.last_event("watchdog_started")
        dry_run = bool(started.get("dry_run")) if started else config.safety.dry_run
    interval = config.poll.interval
    last_good = snapshot.at if snapshot is not None else (last_poll.at if last_poll else None)
    next_poll: datetime | None = live.next_poll_at if live is not None else None
    if next_poll is None and last_good is not None:
        next_poll = last_good + interval
    health = Health(
        last_good_poll=last_good,
        next_poll=next_poll,
        poll_interval_s=interval.total_seconds(),
        failures_since=reader.count_events("poll_failed", last_good),
        breaker_open=reader.meta(BREAKER_META_KEY) == "1",
        dry_run=dry_run,
        healthy=last_good is not None and now - last_good < _HEALTHY_INTERVALS * interval,
        live=live is not None,
    )
    by_status = (
        snapshot.by_status
        if snapshot is not None
        else (last_poll.by_status if last_poll is not None else {})
    )
    warned = {
        (_text(e.get("job_uuid")), _text(e.get("rule"))): _text(e.get("reason"))
        for e in events
        if e.get("event") == "job_warned"
    }
    return Summary(
        generated_at=now,
        since=start,
        health=health,
        jobs_watched=sum(by_status.values()),
        jobs_by_status=dict(sorted(by_status.items())),
        grace=_grace(reader, rules, dry_run, warned, names),
        cancels=_cancels(events, names),
        skipped=tuple(
            SkipRow(
                at=_time(e.get("timestamp")) or now,
                job_uuid=_text(e.get("job_uuid")),
                job_name=names(_text(e.get("job_uuid"))),
                rule=_text(e.get("rule")),
                why=_text(e.get("why")),
                reason=_text(e.get("reason")),
            )
            for e in reversed(events)
            if e.get("event") == "job_cancel_skipped" and e.get("manual") is not True
        ),
        warnings=tuple(
            WarningRow(
                at=_time(e.get("timestamp")) or now,
                job_uuid=_text(e.get("job_uuid")),
                job_name=names(_text(e.get("job_uuid"))),
                rule=_text(e.get("rule")),
                reason=_text(e.get("reason")),
                dry_run=e.get("dry_run") is True,
            )
            for e in reversed(events)
            if e.get("event") == "job_warned"
        ),
        hand_cancels=_hand_cancels(events, names),
        timeline=_timeline(reader, now),
        counts=counts,
        silences=silence_rows(reader, now, start),
    )
