"""Job histories: explicit ones from a fleet, or a plausible one built from a record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from watchdog.sim.schema import MAIN_PATH, STATUSES, parse_ts, resolve_time

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime


def explicit_history(given: Any, start: datetime) -> list[tuple[str, datetime]]:
    if not isinstance(given, list):
        msg = f"history: expected a list of [STATUS, time], got {given!r}"
        raise ValueError(msg)  # noqa: TRY004 - reported as a fleet problem, like every other
    out = []
    for i, item in enumerate(given):
        if not isinstance(item, list | tuple) or len(item) != 2 or item[0] not in STATUSES:
            msg = f"history[{i}]: expected [STATUS, time], got {item!r}"
            raise ValueError(msg)
        moment = resolve_time(item[1], start)
        if moment is None:
            msg = f"history[{i}]: expected [STATUS, time], got {item!r}"
            raise ValueError(msg)
        out.append((str(item[0]), moment))
    return sorted(out, key=lambda pair: pair[1])


def history_from_record(rec: Mapping[str, Any]) -> list[tuple[str, datetime]]:
    """The plausible history of a record, from its status and timestamps."""
    times = {k: parse_ts(rec[k]) if rec.get(k) else None for k in _TIME_ORDER}
    last = parse_ts(rec["lastUpdated"]) if rec.get("lastUpdated") else times["created"]
    assert last is not None
    return synthesize_history(str(rec["status"]), times, last)


_TIME_ORDER = ("created", "remoteSubmitted", "remoteStarted", "remoteEnded", "ended")


def synthesize_history(
    status: str, times: Mapping[str, datetime | None], last_updated: datetime
) -> list[tuple[str, datetime]]:
    """A plausible status history for a job: the main path up to where it got, then its status."""
    created = times["created"]
    assert created is not None
    if status in MAIN_PATH:
        reached = status
    elif times.get("remoteStarted"):
        reached = "RUNNING"
    elif times.get("remoteSubmitted"):
        reached = "QUEUED"
    else:
        reached = "STAGING_INPUTS"
    path = MAIN_PATH[: MAIN_PATH.index(reached) + 1]
    anchors = {
        "PENDING": created,
        "QUEUED": times.get("remoteSubmitted"),
        "RUNNING": times.get("remoteStarted"),
        "ARCHIVING": times.get("remoteEnded"),
        "FINISHED": times.get("ended"),
    }
    staging_end = anchors["QUEUED"] or (last_updated if status in MAIN_PATH else None)
    staging_end = staging_end or times.get("ended") or last_updated
    events: list[tuple[str, datetime]] = []
    pre = [s for s in path if s in MAIN_PATH[1:5]]
    for step in path:
        moment = anchors.get(step)
        if moment is None and step in pre:
            frac = (pre.index(step) + 1) / (len(pre) + 1)
            moment = created + (staging_end - created) * frac
        if moment is None:
            moment = events[-1][1] if events else created
        events.append((step, moment))
    if status not in MAIN_PATH:
        final = times.get("ended") or last_updated
        events.append((status, max(final, events[-1][1])))
    if status in MAIN_PATH and status not in anchors and events:
        events[-1] = (status, max(events[-1][1], min(last_updated, staging_end)))
    return events
