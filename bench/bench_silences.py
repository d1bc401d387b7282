"""What silences cost a poll: the pure plan of a big fleet with 0, 10, 100 and 1000 silences.

Every poll reads the silences in force (one indexed query) and, for each job with a matching
rule, asks which silence spares it from which rule (`rules.silence.silences_by_rule`): a scan of
the silences in force per (job, matching rule). The figures are the plan's wall time per poll
(best of five), and the read of the silences from a real SQLite file. Half of the silences name
jobs of the fleet by uuid, the rest an owner or an app glob that matches none of them, so most
checks fail late, the costly case.

Run: .venv/bin/python bench/bench_silences.py [--jobs 10000] [--silences 0 10 100 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchdog.config.model import ExemptSettings
from watchdog.config.rule_schema import RuleConfig
from watchdog.jobs import Job
from watchdog.rules.evaluate import compile_rule
from watchdog.rules.poll_plan import PlanSettings, plan_poll
from watchdog.state.snapshot import StateSnapshot
from watchdog.state.store import StateStore

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
H = timedelta(hours=1)
RULES = [
    compile_rule(RuleConfig.model_validate(data))
    for data in (
        {"name": "long", "when": {"runtime_over": "12h"}, "action": "cancel"},
        {"name": "grace", "when": {"runtime_over": "3h"}, "grace": "1h", "action": "cancel"},
    )
]


def fleet(n: int) -> list[Job]:
    return [
        Job(
            uuid=f"job-{i:06d}",
            status="RUNNING",
            owner=f"user{i % 50}",
            app_id=f"app-{i % 7}",
            remote_started=NOW - ((i % 17) + 1) * H,
            created=NOW - 20 * H,
        )
        for i in range(n)
    ]


def add_silences(store: StateStore, count: int, jobs: list[Job]) -> None:
    for i in range(count):
        selector: dict[str, object]
        if i % 2 == 0:
            selector = {"uuids": [jobs[(i * 7919) % len(jobs)].uuid]}
        elif i % 4 == 1:
            selector = {"owner": f"nobody{i}"}
        else:
            selector = {"app": f"other-{i}*"}
        store.add_silence(
            created_at=NOW - H,
            expires_at=NOW + H,
            created_by="bench",
            reason="bench",
            **selector,  # type: ignore[arg-type]
        )


def measure(jobs: list[Job], count: int, directory: Path) -> tuple[float, float, int]:
    with StateStore.open(directory / f"state-{count}.db") as store:
        add_silences(store, count, jobs)
        started = time.perf_counter()
        silences = tuple(store.active_silences(NOW))
        read_s = time.perf_counter() - started
    settings = PlanSettings(
        exempt=ExemptSettings(),
        max_cancels_per_poll=10**6,
        max_cancels_per_hour=10**6,
        silences=silences,
    )
    best = float("inf")
    skipped = 0
    for _ in range(5):
        started = time.perf_counter()
        plan = plan_poll(jobs, RULES, StateSnapshot(), NOW, settings)
        best = min(best, time.perf_counter() - started)
        skipped = sum(1 for e in plan.events if getattr(e, "why", None) == "silenced")
    return best, read_s, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--silences", type=int, nargs="+", default=[0, 10, 100, 1000])
    args = parser.parse_args()
    jobs = fleet(args.jobs)
    print(f"{args.jobs} jobs, 2 cancel rules; plan wall time per poll (best of 5)")
    print(f"{'silences':>9} {'plan ms':>9} {'read ms':>9} {'spared':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.silences:
            plan_s, read_s, spared = measure(jobs, count, Path(tmp))
            print(f"{count:>9} {plan_s * 1000:>9.1f} {read_s * 1000:>9.2f} {spared:>7}")


if __name__ == "__main__":
    main()
