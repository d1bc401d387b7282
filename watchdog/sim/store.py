"""The simulator's jobs: creation from partial records, ordering caches, scheduled transitions.

Not thread-safe by itself: the `Simulator` holds one lock around every call.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from watchdog.durations import parse_duration
from watchdog.sim.jobstate import SimJob
from watchdog.sim.records import build_record
from watchdog.sim.search import Order, sort_jobs

if TYPE_CHECKING:
    import random
    from collections.abc import Iterator, Mapping, Sequence


class JobStore:
    """Every job of the simulated tenant, in creation order."""

    def __init__(
        self, *, tenant: str, default_owner: str, start: datetime, rng: random.Random
    ) -> None:
        self.tenant = tenant
        self.default_owner = default_owner
        self.start = start
        self.rng = rng
        self._jobs: dict[str, SimJob] = {}
        self._version = 0
        self._ordered: dict[tuple[Order, ...], tuple[int, list[SimJob]]] = {}
        self._pending: set[str] = set()
        self._sharees: set[str] = set()

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[SimJob]:
        return iter(self._jobs.values())

    def get(self, uuid: str) -> SimJob | None:
        return self._jobs.get(uuid)

    def changed(self) -> None:
        """Note that some job changed, so cached orderings are stale."""
        self._version += 1

    def add(self, partial: Mapping[str, Any], now: datetime) -> SimJob:
        """Complete a partial record and hold the job.

        Raises:
            ValueError: the partial record is invalid, or its uuid is taken.
        """
        record, steps = build_record(
            partial,
            job_id=len(self._jobs) + 1,
            tenant=self.tenant,
            default_owner=self.default_owner,
            now=now,
            start=self.start,
            rng=self.rng,
        )
        if record["uuid"] in self._jobs:
            msg = f"uuid: a job {record['uuid']} already exists"
            raise ValueError(msg)
        delay = partial.get("cancel_delay")
        job = SimJob(
            record=record,
            steps=steps,
            partial=partial,
            shared_with=frozenset(partial.get("shared_with") or ()),
            cancel_mode=str(partial.get("cancel", "honour")),
            cancel_delay=_delay(delay) if delay is not None else None,
            live=bool(partial.get("live", True)),
        )
        self._jobs[job.uuid] = job
        self._sharees |= job.shared_with
        self.changed()
        return job

    def has_shares(self, user: str) -> bool:
        """Whether any job is shared with `user` (`JobListUtils.getSharedJobUuids` not empty)."""
        return user in self._sharees

    def ordered(self, orders: Sequence[Order]) -> list[SimJob]:
        """Every job in the given order (creation order when none), cached until a change."""
        key = tuple(orders)
        if not key:
            cached = self._ordered.get(key)
            if cached is None or cached[0] != self._version:
                self._ordered[key] = (self._version, list(self._jobs.values()))
            return self._ordered[key][1]
        cached = self._ordered.get(key)
        if cached is None or cached[0] != self._version:
            self._ordered[key] = (self._version, sort_jobs(self._jobs.values(), key))
        return self._ordered[key][1]

    def set_status(
        self, job: SimJob, status: str, moment: datetime, condition: str | None = None
    ) -> None:
        job.set_status(status, moment, condition)
        if job.terminal:
            job.pending = None
            self._pending.discard(job.uuid)
        self.changed()

    def schedule(self, job: SimJob, due: datetime, status: str, condition: str | None) -> None:
        """Make `job` enter `status` at `due` (a cancel landing later, for instance)."""
        if job.pending is None or job.pending[1] != status or due < job.pending[0]:
            job.pending = (due, status, condition)
        self._pending.add(job.uuid)

    def settle(self, now: datetime) -> None:
        """Apply every scheduled transition that is due, at the time it was due."""
        if not self._pending:
            return
        for uuid in sorted(self._pending):
            job = self._jobs[uuid]
            if job.pending is None or job.terminal:
                job.pending = None
                self._pending.discard(uuid)
                continue
            due, status, condition = job.pending
            if due <= now:
                job.pending = None
                self._pending.discard(uuid)
                self.set_status(job, status, due, condition)


def _delay(value: Any) -> timedelta:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return parse_duration(str(value))
