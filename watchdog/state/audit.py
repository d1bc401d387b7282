"""The audit trail: every event the daemon logs, kept in the state store for `history`.

`EventLog` appends each final event (stamped and scrubbed) as it is logged; `history` and the status
page read them back. `StateStore` inherits these methods; they use its one connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from watchdog.state.database import Database
from watchdog.state.schema import now_utc, to_db

if TYPE_CHECKING:
    from collections.abc import Mapping


class AuditTrail(Database):
    """The events table. Raises `StateError` like the rest of the store."""

    def append_event(self, event: Mapping[str, Any]) -> None:
        """Append one event (its `timestamp`, `event`, `job_uuid`, `rule` and the whole as JSON).

        Committed at once: a killed daemon loses no event it had appended. Not fenced: a
        standby's own events (and a deposed instance's last ones) belong in the trail too.
        """
        at = _event_time(event.get("timestamp"))
        body = orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        job_uuid, rule = event.get("job_uuid"), event.get("rule")
        with self._write(fenced=False) as conn:
            conn.execute(
                "INSERT INTO events (at, event, job_uuid, rule, body) VALUES (?, ?, ?, ?, ?)",
                (
                    to_db(at),
                    str(event.get("event", "")),
                    None if job_uuid is None else str(job_uuid),
                    None if rule is None else str(rule),
                    body,
                ),
            )

    def events_since(
        self, since: datetime, *, limit: int | None = None, job_uuid: str | None = None
    ) -> list[dict[str, Any]]:
        """Events at or after `since` (optionally of one job), oldest first, at most `limit`."""
        sql = "SELECT body FROM events WHERE at >= ?"
        params: list[Any] = [to_db(since)]
        if job_uuid is not None:
            sql += " AND job_uuid = ?"
            params.append(job_uuid)
        sql += " ORDER BY at, id LIMIT ?"
        params.append(-1 if limit is None else limit)
        return [orjson.loads(row[0]) for row in self._query(sql, params)]


def _event_time(value: Any) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return now_utc()
        if parsed.tzinfo is not None:
            return parsed
    return now_utc()
