"""Live mode: jobs move through the Tapis status machine as time passes, and new jobs arrive.

Time advances in ticks (`live.tick` of the fleet). The simulator catches up lazily, before it
answers anything, so no background thread is needed and a paused clock means a frozen fleet.
Jobs pinned with `live: false` never move by themselves (stuck or runaway jobs stay so).
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from watchdog.sim.schema import MAIN_PATH, SYSTEMS

if TYPE_CHECKING:
    from watchdog.sim.fleet import LiveSettings
    from watchdog.sim.store import JobStore

MAX_TICKS_PER_CATCH_UP = 500
APPS = ("opensees-mp-s3", "opensees-sp", "adcirc", "namd", "lammps")
_NEXT = dict(itertools.pairwise(MAIN_PATH))


class LiveEngine:
    """Advances a job store tick by tick, drawing from a seeded generator."""

    def __init__(
        self, settings: LiveSettings, start: datetime, seed: int, owners: list[str]
    ) -> None:
        self.settings = settings
        self.last_tick = start
        self.rng = random.Random(seed ^ 0x5EED)  # noqa: S311 - simulation, not security
        self.owners = owners

    def catch_up(self, store: JobStore, now: datetime) -> None:
        """Play every tick up to `now` (at most MAX_TICKS_PER_CATCH_UP; older ones are skipped)."""
        tick = self.settings.tick
        behind = int((now - self.last_tick) / tick)
        if behind <= 0:
            return
        if behind > MAX_TICKS_PER_CATCH_UP:
            self.last_tick += tick * (behind - MAX_TICKS_PER_CATCH_UP)
            behind = MAX_TICKS_PER_CATCH_UP
        for _ in range(behind):
            self.last_tick += tick
            self.step(store, self.last_tick)

    def step(self, store: JobStore, moment: datetime) -> None:
        """One tick: maybe advance or fail each active unpinned job, maybe add new jobs."""
        s = self.settings
        rng = self.rng
        for job in list(store):
            if not job.live or job.terminal or job.pending is not None:
                continue
            status = job.status
            chance = s.running_advance if status == "RUNNING" else s.advance
            if status in {"BLOCKED", "PAUSED"} or rng.random() >= chance:
                continue
            if rng.random() < s.fail:
                store.set_status(job, "FAILED", moment, rng.choice(_FAILURES))
            else:
                store.set_status(job, _NEXT[status], moment)
        arrivals = int(s.arrivals) + (1 if rng.random() < s.arrivals % 1 else 0)
        for _ in range(arrivals):
            if len(store) >= s.max_jobs:
                break
            store.add(self.new_job(moment), moment)

    def new_job(self, moment: datetime) -> dict[str, Any]:
        rng = self.rng
        app = rng.choice(APPS)
        return {
            "status": "PENDING",
            "appId": app,
            "owner": rng.choice(self.owners),
            "execSystemId": rng.choice(sorted(SYSTEMS)),
            "nodeCount": rng.choice((1, 1, 2, 4, 8)),
            "maxMinutes": rng.choice((60, 120, 480, 1440)),
            "created": moment,
            "history": [["PENDING", moment]],
            "tags": rng.choice(([], ["overnight"], ["sweep"])),
        }


_FAILURES = ("SCHEDULER_TIMEOUT", "SCHEDULER_OUT_OF_MEMORY", "JOB_EXECUTION_MONITORING_TIMEOUT")
ZERO = timedelta(0)
