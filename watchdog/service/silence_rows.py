"""The silences the status page, `report` and the digest show (see `service.summary`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchdog.errors import StateError

if TYPE_CHECKING:
    from datetime import datetime

    from watchdog.state.reader import StateReader

__all__ = ["SilenceRow", "silence_rows"]


@dataclass(frozen=True, slots=True)
class SilenceRow:
    """A silence in force now, or one that ended in the window: who spared what, why, until."""

    id: str
    matches: str
    rule: str | None
    by: str
    reason: str
    created_at: datetime
    until: datetime
    active: bool
    ended_by: str | None


def silence_rows(reader: StateReader, now: datetime, start: datetime) -> tuple[SilenceRow, ...]:
    """Silences in force at `now` (first), then those that ended since `start`."""
    try:
        kept = reader.silences(ended_since=start)
    except StateError:
        return ()  # a store of an older schema, not yet migrated by a daemon: no silences yet
    rows = [
        SilenceRow(
            id=s.id,
            matches=s.describe().removesuffix(f"; rule {s.rule}"),
            rule=s.rule,
            by=s.created_by,
            reason=s.reason,
            created_at=s.created_at,
            until=s.until,
            active=s.active(now),
            ended_by=s.ended_by,
        )
        for s in kept
        if s.created_at <= now
    ]
    return tuple(sorted(rows, key=lambda r: (not r.active, r.until, r.id)))
