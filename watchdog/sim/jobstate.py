"""One simulated job: its record, history, sharing, cancel behaviour, and cached JSON.

Serialising 10,000 records per page would dominate every benchmark, so each job keeps its
summary and full JSON as bytes and drops them whenever the record changes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from watchdog.jobs import format_timestamp as format_ts

if TYPE_CHECKING:
    from collections.abc import Mapping

from watchdog.sim.history import history_from_record
from watchdog.sim.records import parameter_set
from watchdog.sim.schema import SUMMARY_FIELDS, TERMINAL, TIMESTAMP_FIELDS, parse_ts

if TYPE_CHECKING:
    from datetime import datetime, timedelta


@dataclass
class HistoryEvent:
    """One entry of a job's history, as `getJobHistory` sends it."""

    event: str
    created: datetime
    event_detail: str
    description: str

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "created": format_ts(self.created),
            "eventDetail": self.event_detail,
            "description": self.description,
            "transferTaskUuid": None,
            "transferSummary": {},
        }


def status_event(status: str, previous: str | None, moment: datetime) -> HistoryEvent:
    """The `JOB_NEW_STATUS` event Tapis records when a job enters `status`."""
    text = f"The job has transitioned to a new status: {status}."
    if previous:
        text += f" The previous job status was {previous}."
    return HistoryEvent("JOB_NEW_STATUS", moment, status, text)


@dataclass
class SimJob:
    """A job held by the simulator. Mutate it only under the simulator's lock."""

    record: dict[str, Any]
    steps: list[tuple[str, datetime]] | None = None
    partial: Mapping[str, Any] = field(default_factory=dict, repr=False)
    shared_with: frozenset[str] = frozenset()
    cancel_mode: str = "honour"
    cancel_delay: timedelta | None = None
    live: bool = True
    cancels_received: int = 0
    pending: tuple[datetime, str, str | None] | None = None
    _full: bytes | None = field(default=None, repr=False)
    _summary: bytes | None = field(default=None, repr=False)
    _times: dict[str, datetime | None] = field(default_factory=dict, repr=False)
    _history: list[HistoryEvent] | None = field(default=None, repr=False)

    @property
    def history(self) -> list[HistoryEvent]:
        """The job's history, built on first use (most jobs of a big fleet are never asked)."""
        if self._history is None:
            steps = self.steps if self.steps is not None else history_from_record(self.record)
            events = []
            previous = None
            for status, moment in steps:
                events.append(status_event(status, previous, moment))
                previous = status
            self._history = events
            self.steps = None
        return self._history

    def field(self, name: str) -> Any:
        """A record field as served; `parameterSet` is built on demand."""
        value = self.record.get(name)
        if name == "parameterSet" and value is None:
            return parameter_set(self.partial, self.record)
        return value

    def full_record(self) -> dict[str, Any]:
        """The complete record as `getJob` serves it."""
        rec = self.record
        if rec.get("parameterSet") is None:
            return {**rec, "parameterSet": parameter_set(self.partial, rec)}
        return rec

    @property
    def uuid(self) -> str:
        return str(self.record["uuid"])

    @property
    def status(self) -> str:
        return str(self.record["status"])

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def touch(self) -> None:
        """Forget cached serialisations after the record changed."""
        self._full = None
        self._summary = None
        self._times.clear()

    def full_json(self) -> bytes:
        if self._full is None:
            self._full = orjson.dumps(self.full_record())
        return self._full

    def summary_json(self) -> bytes:
        """The summary record: `JobListDTO` has a `condition`, but `JobsDao` never selects the
        column, so it is always null there."""
        if self._summary is None:
            rec = self.record
            summary = {k: rec[k] for k in SUMMARY_FIELDS}
            summary["condition"] = None
            self._summary = orjson.dumps(summary)
        return self._summary

    def value(self, attr: str) -> Any:
        """A field's value for comparisons: timestamps as datetimes, the rest as stored."""
        if attr in TIMESTAMP_FIELDS:
            if attr not in self._times:
                raw = self.record.get(attr)
                self._times[attr] = parse_ts(raw) if raw else None
            return self._times[attr]
        return self.record.get(attr)

    def set_status(self, status: str, moment: datetime, condition: str | None = None) -> None:
        """Move the job to `status` at `moment`, keeping timestamps and history coherent."""
        previous = self.status
        if status == previous and condition is None:
            return
        history = self.history
        rec = self.record
        stamp = format_ts(moment)
        rec["status"] = status
        rec["lastMessage"] = f"Setting job status to {status}."
        rec["lastUpdated"] = stamp
        if status == "QUEUED" and not rec["remoteSubmitted"]:
            rec["remoteSubmitted"] = stamp
            rec["remoteJobId"] = rec["remoteJobId"] or str(
                zlib.crc32(self.uuid.encode()) % 9_000_000 + 1_000_000
            )
            rec["remoteQueue"] = rec["remoteQueue"] or rec["execSystemLogicalQueue"]
        if status == "RUNNING" and not rec["remoteStarted"]:
            rec["remoteStarted"] = stamp
        if status == "RUNNING":
            rec["remoteLastStatusCheck"] = stamp
        if status == "BLOCKED":
            rec["blockedCount"] = int(rec["blockedCount"] or 0) + 1
        if status in {"ARCHIVING", *TERMINAL} and rec["remoteStarted"] and not rec["remoteEnded"]:
            rec["remoteEnded"] = stamp
        if status in TERMINAL:
            rec["ended"] = stamp
            rec["condition"] = (
                condition
                or {
                    "FINISHED": "NORMAL_COMPLETION",
                    "CANCELLED": "CANCELLED_BY_USER",
                    "FAILED": "SCHEDULER_TERMINATED",
                }[status]
            )
            rec["remoteOutcome"] = {"FINISHED": "FINISHED", "FAILED": "FAILED"}.get(status)
            if status == "FINISHED":
                rec["remoteResultInfo"] = "0"
        else:
            rec["condition"] = condition
            rec["ended"] = None
        if status != previous:
            history.append(status_event(status, previous, moment))
        self.touch()

    def add_event(self, event: HistoryEvent) -> None:
        self.history.append(event)
