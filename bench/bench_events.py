"""What one event costs: scrubbing, and the whole EventLog path to a JSON line on stdout.

A poll that first matches many jobs emits one `rule_matched` per job, so the per-event cost is
multiplied by the fleet. Prints microseconds per event (best of `--repeat` runs of `--count`
events each), for scrub_event alone, for EventLog to JSON lines, and for EventLog to the console
rendering, with four registered secrets (two long, two short) as a configured daemon has.

Usage: .venv/bin/python bench/bench_events.py [--count 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import timeit

from watchdog.events import EventLog
from watchdog.jobs import Job
from watchdog.logs import configure_logging
from watchdog.redaction import register_basic_credentials, register_secret, scrub_event

JOB = Job(
    uuid="7c1d2e3f-0000-4000-8000-000000000007-007",
    status="RUNNING",
    owner="alice",
    app_id="opensees-mp-s3",
    name="big run",
)
EVENT = {
    "timestamp": "2026-12-02T03:00:00Z",
    "level": "info",
    "event": "rule_matched",
    "job_uuid": JOB.uuid,
    "owner": "alice",
    "app_id": "opensees-mp-s3",
    "status": "RUNNING",
    "rule": "frontera-12h",
    "reason": "runtime 12h03m exceeds 12h",
    "dry_run": False,
    "job_name": "big run",
}


def _best(fn: object, count: int, repeat: int) -> float:
    times = timeit.repeat(fn, number=count, repeat=repeat)  # type: ignore[arg-type]
    return min(times) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for secret in ("alice-password-123", "a", "pw"):
        register_secret(secret)
    register_basic_credentials("watchdog-client", "client-key-secret")
    scrub_us = _best(lambda: scrub_event(EVENT), args.count, args.repeat)
    print(f"scrub_event            {scrub_us:6.1f} us/event")
    for name, fmt in (("JSON line", "json"), ("console", "console")):
        configure_logging(stream=io.StringIO(), log_format=fmt)  # type: ignore[arg-type]
        log = EventLog()  # after configuring: structlog caches a logger on its first use
        us = _best(
            lambda log=log: log.rule_matched(JOB, rule="frontera-12h", reason="runtime 12h03m"),
            args.count,
            args.repeat,
        )
        print(f"EventLog -> {name:<10} {us:6.1f} us/event")


if __name__ == "__main__":
    main()
