"""Defects of job records, reported once per job and defect instead of on every poll.

A record Tapis keeps answering the same wrong way (a malformed field, a `remoteStarted` in year
0001) would otherwise log the same `tapis_error` every poll, burying everything else. A defect
is logged the first poll it is seen, and again only after a whole poll went by without it (the
record was fixed, or the job left, and then it came back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from watchdog.jobs import implausible_times

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from watchdog.jobs import Job


@dataclass
class DefectLog:
    """Which (job, defect) pairs were reported; one poll's sightings replace the last's."""

    _known: set[tuple[str, str]] = field(default_factory=set)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def is_new(self, job_uuid: str | None, defect: str) -> bool:
        """Note a sighting this poll; True when it was not seen in the previous poll."""
        key = (job_uuid or "", defect)
        self._seen.add(key)
        return key not in self._known

    def time_defects(self, jobs: Iterable[Job], now: datetime) -> list[tuple[str, str]]:
        """(uuid, sentence) for each impossible time of `jobs` not reported yet."""
        return [
            (job.uuid, reason)
            for job in jobs
            for reason in implausible_times(job, now).values()
            if self.is_new(job.uuid, reason)
        ]

    def poll_done(self, *, complete: bool) -> None:
        """End a poll: a complete one replaces what is known; a failed one only adds to it."""
        self._known = self._seen if complete else self._known | self._seen
        self._seen = set()
