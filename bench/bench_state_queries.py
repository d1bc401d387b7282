"""How many SQL statements, and how long, the decision step of a big poll costs.

The decision step is what `Actor.handle_poll` does between the listing and the Tapis calls: read
the state snapshot, plan (pure), write the plan (the listing first) in one transaction. Statements
are counted with SQLite's trace callback (`StateStore.trace`) on a real file; three polls per size,
so the later ones run against a store holding the earlier decisions. For comparison, the plan's
decisions written with the one-row methods (as the daemon did before it read and wrote in
batches) on a copy of the store.

Run: .venv/bin/python bench/bench_state_queries.py [--jobs 1000 10000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.config.model import ExemptSettings
from watchdog.config.rule_schema import RuleConfig
from watchdog.jobs import Job
from watchdog.rules.evaluate import compile_rule
from watchdog.rules.poll_plan import PlanSettings, plan_poll
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from watchdog.state.snapshot import StateChanges

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
H = timedelta(hours=1)
RULES = [
    compile_rule(RuleConfig.model_validate(data))
    for data in (
        {"name": "long", "when": {"runtime_over": "12h"}, "action": "cancel"},
        {"name": "tell", "when": {"runtime_over": "6h"}, "action": "warn"},
        {"name": "grace", "when": {"runtime_over": "3h"}, "grace": "1h", "action": "cancel"},
        {
            "name": "stuck",
            "match": {"status": "STAGING_INPUTS"},
            "when": {"in_status_over": "1h"},
            "action": "cancel",
        },
    )
]
SETTINGS = PlanSettings(
    exempt=ExemptSettings(tags=("keep",)), max_cancels_per_poll=10, max_cancels_per_hour=50
)


def fleet(n: int, shift: float) -> list[Job]:
    return [
        Job(
            uuid=f"job-{i:06d}",
            status="STAGING_INPUTS" if i % 5 == 0 else "RUNNING",
            remote_started=None if i % 5 == 0 else NOW - ((i % 17) + shift) * H,
            created=NOW - 20 * H,
            tags=("keep",) if i % 7 == 0 else (),
        )
        for i in range(n)
    ]


def row_by_row(store: StateStore, c: StateChanges) -> int:
    """The statements the one-row methods need for the same changes (and their reads)."""
    seen: list[str] = []
    store.trace(seen.append)
    for job_uuid, status, entered in c.status_entries:
        store.record_status_entry(job_uuid, status, entered)
    for job_uuid, rule in c.matches:
        store.record_match(job_uuid, rule, c.at)
        store.decision(job_uuid, rule)
    for job_uuid, rule in c.warned:
        store.record_warned(job_uuid, rule, c.at)
    for job_uuid, rule in c.cleared:
        store.record_cleared(job_uuid, rule, c.at)
    for job_uuid, rule, outcome in c.acted:
        store.decision(job_uuid, rule)
        store.record_acted(job_uuid, rule, c.at, outcome)
    store.trace(None)
    return len(seen)


def measure(n: int, directory: Path) -> None:
    path = directory / f"state-{n}.db"
    with StateStore.open(path) as store:
        for poll in range(3):
            now = NOW + poll * 1.5 * H
            jobs = fleet(n, shift=poll * 1.5)
            statuses = {job.uuid: job.status for job in jobs}
            seen: list[str] = []
            store.trace(seen.append)
            t1, n1 = time.perf_counter(), 0
            snapshot = store.snapshot(statuses, now)
            t2, n2 = time.perf_counter(), len(seen)
            entered = {
                job.uuid: now - 2 * H
                for job in jobs
                if job.status == "STAGING_INPUTS" and job.uuid not in snapshot.status_entries
            }
            plan = plan_poll(jobs, RULES, snapshot, now, SETTINGS, entered=entered)
            t3, n3 = time.perf_counter(), len(seen)
            copy = directory / f"copy-{n}.db"
            shutil.copyfile(path, copy)
            store.apply(plan.changes)
            t4, n4 = time.perf_counter(), len(seen)
            store.trace(None)
            with StateStore.open(copy) as other:
                rows = row_by_row(other, plan.changes)
            print(
                f"{n:>6} jobs  poll {poll + 1}: matches {plan.matches:>6}  statements: "
                f"snapshot {n2 - n1} plan {n3 - n2} apply {n4 - n3} "
                f"(the plan's decisions row by row: {rows})  ms: "
                f"snapshot {1000 * (t2 - t1):.1f} plan {1000 * (t3 - t2):.1f} "
                f"apply {1000 * (t4 - t3):.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for n in args.jobs:
            measure(n, Path(directory))


if __name__ == "__main__":
    main()
