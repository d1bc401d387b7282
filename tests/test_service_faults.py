"""Every fault the simulator can inject, in the middle of a run: polling and cancelling resume.

One daemon runs per group of faults. For each fault the test injects it while the daemon polls,
adds a fresh offender, and waits until that offender is cancelled and a later poll completes.
At the end every offender was cancelled exactly once (one accepted cancel request per offender,
as the simulator's request log and its own count show), no healthy job was touched, and the
daemon never exited.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import pytest
from test_service_harness import (
    HEALTHY,
    OFFENDER,
    DaemonProcess,
    Service,
    fleet,
    service,
    wait_until,
)

if TYPE_CHECKING:
    from pathlib import Path

# Each step injects one kind of fault on every endpoint a poll and a cancel touch: the search,
# the status check right before the cancel (and while following it), and the cancel itself.
# The Tapis timeout in these runs is one second, and the client tries a call three times.
STEPS: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "latency",
        [
            {"kind": "latency", "endpoint": "search", "seconds": 0.5, "count": 1},
            {"kind": "latency", "endpoint": "status", "seconds": 0.3, "count": 1},
            {"kind": "latency", "endpoint": "cancel", "seconds": 0.3, "count": 1},
        ],
    ),
    (
        "5xx",
        [
            {"kind": "error", "endpoint": "search", "status": 503, "count": 3},  # a failed poll
            {"kind": "error", "endpoint": "status", "status": 500, "count": 2},
            {"kind": "error", "endpoint": "cancel", "status": 502, "count": 1},
        ],
    ),
    (
        "429",
        [
            {"kind": "rate_limit", "endpoint": "search", "seconds": 1, "count": 1},
            {"kind": "rate_limit", "endpoint": "cancel", "seconds": 1, "count": 1},
        ],
    ),
    (
        "reset",
        [
            {"kind": "reset", "endpoint": "search", "count": 2},
            {"kind": "reset", "endpoint": "status", "count": 1},
            {"kind": "reset", "endpoint": "cancel", "count": 1},
        ],
    ),
    (
        "hang",
        [
            {"kind": "hang", "endpoint": "search", "seconds": 3, "count": 1},
            {"kind": "hang", "endpoint": "cancel", "seconds": 3, "count": 1},
        ],
    ),
    (
        "malformed",  # a garbled cancel answer: see test_a_cancel_whose_answer_is_lost_...
        [
            {"kind": "malformed", "endpoint": "search", "count": 2},
            {"kind": "malformed", "endpoint": "status", "count": 1},
        ],
    ),
    (
        "beyond the timeout",
        [
            {"kind": "latency", "endpoint": "search", "seconds": 1.5, "count": 1},
            {"kind": "latency", "endpoint": "status", "seconds": 1.5, "count": 1},
            # More failures than the client's tries: this poll's cancel fails, the next sends it.
            {"kind": "error", "endpoint": "cancel", "status": 503, "count": 3},
        ],
    ),
]
# Faults after which nobody knows whether Tapis took the cancel: the request reached it, the
# answer did not make it back whole.
AMBIGUOUS_CANCEL_FAULTS: list[dict[str, Any]] = [
    {"kind": "malformed", "endpoint": "cancel", "count": 1},
    {"kind": "latency", "endpoint": "cancel", "seconds": 1.5, "count": 1},
]


def _run_steps(svc: Service, daemon: DaemonProcess, steps: list[tuple[str, Any]]) -> list[str]:
    """Inject each step's faults, add an offender, wait for its cancel; a good poll at the end."""
    offenders: list[str] = []
    for name, faults in steps:
        mark = daemon.position
        for fault in faults:
            svc.sim.set_fault(**fault)
        job = svc.sim.add_job(OFFENDER)
        offenders.append(job)
        daemon.wait_event("job_cancelled", job_uuid=job, after=mark)
        wait_until(lambda: not svc.sim.faults.faults, f"every {name} fault used up")
        assert daemon.alive(), name
    daemon.wait_polls(1, after=daemon.position - 1)
    return offenders


def _check_exactly_once(svc: Service, offenders: list[str], healthy: list[str]) -> None:
    for job in offenders:
        assert svc.cancel_posts(job) == 1, job
        assert svc.sim.cancels_received(job) == 1, job
    for job in healthy:
        assert svc.sim.cancels_received(job) == 0, job


@pytest.mark.parametrize("steps", [STEPS[:4], STEPS[4:]], ids=["first", "second"])
def test_faults_mid_run(tmp_path: Path, steps: list[tuple[str, Any]]) -> None:
    with service(tmp_path, fleet(HEALTHY, HEALTHY)) as svc:
        healthy = svc.sim.uuids()
        # A cancel whose answer never came (reset, hang) is not retried at once, as Tapis may
        # have taken it; following the job re-sends it after resend_after if it still runs.
        svc.write_config(timeout="1s", safety={"resend_after": "2s"})
        daemon = svc.start()
        daemon.wait_event("poll_completed")
        offenders = _run_steps(svc, daemon, steps)
        if any(name == "5xx" for name, _ in steps):
            assert daemon.named("poll_failed"), "three failed searches did not fail the poll"
        assert daemon.stop(signal.SIGTERM) == 0
        _check_exactly_once(svc, offenders, healthy)


def test_tokens_that_expire_every_few_seconds(tmp_path: Path) -> None:
    """Tokens live two seconds, then one: the daemon logs in again and keeps polling and acting."""
    with service(tmp_path, fleet(HEALTHY, token_ttl="2s")) as svc:
        healthy = svc.sim.uuids()
        svc.write_config(timeout="1s")
        daemon = svc.start()
        mark, _ = daemon.wait_event("poll_completed")
        offenders = [svc.sim.add_job(OFFENDER)]
        daemon.wait_event("job_cancelled", job_uuid=offenders[0], after=mark)

        def logins() -> int:
            return sum(1 for r in svc.sim.requests if r.endpoint == "tokens" and r.status == 201)

        wait_until(lambda: logins() >= 2, "a login after the first token expired")
        # The next logins get one-second tokens.
        svc.sim.set_fault(kind="token_ttl", seconds=1, count=2)
        mark = daemon.position
        offenders.append(svc.sim.add_job(OFFENDER))
        daemon.wait_event("job_cancelled", job_uuid=offenders[1], after=mark)
        wait_until(lambda: not svc.sim.faults.faults and logins() >= 4, "two more logins")
        daemon.wait_polls(1, after=daemon.position - 1)
        expired = [r for r in svc.sim.requests if r.status == 401]
        assert expired, "no token ever expired"
        assert daemon.named("poll_failed") == []
        assert daemon.stop() == 0
        _check_exactly_once(svc, offenders, healthy)


def test_search_failures_then_breaker(tmp_path: Path) -> None:
    """Failing searches cancel nothing; then more offenders than allowed: the breaker holds all."""
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.write_config(
            timeout="1s", safety={"max_cancels_per_poll": 2}, metrics={"listen": "127.0.0.1:0"}
        )
        daemon = svc.start()
        mark, _ = daemon.wait_event("poll_completed")
        svc.sim.set_fault(kind="error", endpoint="search", status=500)
        failed, _ = daemon.wait_event("poll_failed", after=mark)
        offenders = [svc.sim.add_job(OFFENDER) for _ in range(3)]
        failed, _ = daemon.wait_event("poll_failed", after=failed + 1)
        assert not [r for r in svc.sim.requests if r.endpoint == "cancel"]
        svc.sim.clear_faults()

        opened, event = daemon.wait_event("circuit_opened", after=failed)
        assert event["due"] == 3
        assert event["allowed"] == 0
        daemon.wait_polls(2, after=opened)
        skipped = daemon.named("job_cancel_skipped", why="circuit_open")
        assert sorted(e["job_uuid"] for e in skipped) == sorted(offenders)
        assert not [r for r in svc.sim.requests if r.endpoint == "cancel"]
        assert daemon.stop() == 0


def test_a_cancel_whose_answer_is_lost_is_not_sent_again(tmp_path: Path) -> None:
    with service(tmp_path, fleet(HEALTHY)) as svc:
        healthy = svc.sim.uuids()
        svc.write_config(timeout="1s")
        daemon = svc.start()
        daemon.wait_event("poll_completed")
        for fault in AMBIGUOUS_CANCEL_FAULTS:
            svc.sim.set_fault(**fault)
            job = svc.sim.add_job(OFFENDER)
            wait_until(lambda: svc.sim.cancels_received(job) > 0, "a cancel")  # noqa: B023
            daemon.wait_polls(3, after=daemon.position - 1)
            assert svc.sim.cancels_received(job) == 1, fault
            assert daemon.named("job_cancelled", job_uuid=job), fault
            svc.sim.clear_faults()
        assert daemon.stop() == 0
        assert all(svc.sim.cancels_received(job) == 0 for job in healthy)
