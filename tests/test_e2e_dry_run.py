"""End to end: a dry run you can repeat and trust.

Each `run --once --dry-run` names every would-be cancel and warning, every time; it says when the
circuit breaker would hold cancels and why; and it leaves the state a real run relies on as it
was, so the real run after it decides exactly as if no dry run had happened. Against the simulator
over real HTTP and real tapipy; the state store is read back from its file.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from test_e2e_harness import (
    LONG_RUN,
    PASSWORD,
    Event,
    Tenant,
    TenantFactory,
    base_fleet,
    check_event_fields,
    jobs_of,
    named,
    one,
    parse_lines,
)

from watchdog.service.daemon import build_daemon
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio

JOBS: list[dict[str, Any]] = [
    {"name": "over-a", "status": "RUNNING", "remoteStarted": "-13h"},
    {"name": "over-b", "status": "RUNNING", "remoteStarted": "-14h"},
    {"name": "queued-long", "status": "QUEUED", "remoteSubmitted": "-3d"},
    {"name": "graced", "status": "RUNNING", "remoteStarted": "-2h"},
    {"name": "quiet", "status": "RUNNING", "remoteStarted": "-10m"},
]
RULES: list[dict[str, Any]] = [
    LONG_RUN,
    {"name": "long-queue", "when": {"in_status_over": "2d"}, "action": "warn"},
    {
        "name": "graced-1h",
        "match": {"name": "graced"},
        "when": {"runtime_over": "1h"},
        "grace": "1h",
        "action": "cancel",
    },
]
DECIDING = ("rule_matched", "job_warned", "job_cleared", "job_cancel_skipped")


def decided(events: list[Event]) -> set[tuple[str, str, str, str]]:
    """What a run said about jobs: (event, job, rule, why)."""
    return {
        (e["event"], e["job_uuid"], e["rule"], str(e.get("why", "")))
        for e in events
        if e["event"] in DECIDING
    }


def decisions_in_store(t: Tenant) -> dict[str, Any]:
    """Everything of the store a real run decides from."""
    with StateStore.open(t.state_path) as store:
        return {
            "decisions": {
                u: store.decisions_for(u) for u in t.sim.uuids() if store.decisions_for(u)
            },
            "cancels": store.pending_cancels(),
            "circuit": store.get_meta("circuit_open"),
            "sent": store.cancels_sent_since(datetime(2000, 1, 1, tzinfo=UTC)),
        }


async def test_a_dry_run_repeated_three_times_names_the_same_and_changes_no_decision(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    runs = [await t.run_once(dry_run=True) for _ in range(3)]
    for events in runs:
        check_event_fields(events)
        assert all(e["dry_run"] is True for e in events if e["event"] in DECIDING)
    assert decided(runs[0]) == decided(runs[1]) == decided(runs[2])
    first = runs[0]
    offenders = t.uuids("over-a", "over-b")
    assert jobs_of(first, "job_cancel_skipped", why="dry_run") == offenders
    assert jobs_of(first, "job_warned") == t.uuids("queued-long", "graced")
    assert "cancel at" in one(first, "job_warned", job_uuid=t.uuid("graced"))["reason"]
    assert t.posts("cancel") == []
    assert t.posts("sendEvent") == []
    assert decisions_in_store(t) == {"decisions": {}, "cancels": [], "circuit": None, "sent": 0}

    # The real run decides as if no dry run had happened: every match is new to it, the grace
    # starts with its own warning, and it does what the dry runs said.
    real = await t.run_once()
    check_event_fields(real)
    assert jobs_of(real, "rule_matched", dry_run=False) == t.uuids(
        "over-a", "over-b", "queued-long", "graced"
    )
    assert sorted(t.posts("cancel")) == sorted(offenders)
    assert jobs_of(real, "job_cancelled") == offenders
    assert sorted(t.posts("sendEvent")) == sorted(t.uuids("queued-long", "graced"))
    assert jobs_of(real, "job_warned", dry_run=False) == t.uuids("queued-long", "graced")


@pytest.mark.parametrize(
    ("safety", "held", "why_text"),
    [
        ({"max_cancels_per_poll": 2}, 3, "over max_cancels_per_poll 2"),
        ({"max_cancels_per_hour": 2}, 1, "only 2 left of max_cancels_per_hour 2"),
    ],
)
async def test_a_dry_run_says_which_cancels_the_breaker_would_hold_and_why(
    tenant: TenantFactory, safety: dict[str, Any], held: int, why_text: str
) -> None:
    jobs = [
        {"name": f"j{i}", "status": "RUNNING", "remoteStarted": f"-{13 + i}h"} for i in range(3)
    ]
    t = tenant(base_fleet(jobs))
    t.write_config([LONG_RUN], safety=safety)
    runs = [await t.run_once(dry_run=True) for _ in range(3)]
    for events in runs:
        check_event_fields(events)
        skipped = named(events, "job_cancel_skipped", why="circuit_open", dry_run=True)
        assert len(skipped) == held
        for event in skipped:
            assert why_text in event["reason"]
            assert "circuit breaker would hold it" in event["reason"]
            assert (event["due"], event["allowed"]) == (3, 3 - held)
        assert len(named(events, "job_cancel_skipped", why="dry_run")) == 3 - held
        assert not named(events, "circuit_opened")
    assert decided(runs[0]) == decided(runs[1]) == decided(runs[2])
    assert decisions_in_store(t)["circuit"] is None

    # The real run holds exactly the cancels the dry runs said it would.
    real = await t.run_once()
    assert why_text in one(real, "circuit_opened")["reason"]
    assert jobs_of(real, "job_cancel_skipped", why="circuit_open") == jobs_of(
        runs[0], "job_cancel_skipped", why="circuit_open"
    )
    assert set(t.posts("cancel")) == jobs_of(runs[0], "job_cancel_skipped", why="dry_run")


async def run_until(
    t: Tenant, stop: Callable[[list[Event]], bool], *, dry_run: bool
) -> list[Event]:
    """The daemon's loop in this process until `stop(events)` holds after a poll."""
    events: list[Event] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E2E_TAPIS_PASSWORD", PASSWORD)
        daemon, server = build_daemon(t.config_path, dry_run=dry_run, listeners=(events.append,))
    assert server is None
    daemon.until = lambda: stop(events)
    try:
        with anyio.fail_after(20):
            assert await daemon.serve() == 0
    finally:
        daemon.store.close()
    return events


GRACE_RULE: dict[str, Any] = {
    "name": "grace-run",
    "match": {"status": "RUNNING"},
    "when": {"runtime_over": "1h"},
    "grace": "1s",
    "action": "cancel",
}


async def test_a_long_dry_run_passes_the_grace_in_its_own_memory_and_a_real_run_warns_first(
    tenant: TenantFactory,
) -> None:
    jobs = [
        {"name": "over", "status": "RUNNING", "remoteStarted": "-3h"},
        {"name": "recovers", "status": "RUNNING", "remoteStarted": "-3h"},
    ]
    t = tenant(base_fleet(jobs))
    t.write_config([GRACE_RULE], poll={"interval": "1s"})
    over, recovers = t.uuid("over"), t.uuid("recovers")

    def after_first_poll(events: list[Event]) -> bool:
        if len(named(events, "poll_completed")) == 1:
            t.sim.set_status(recovers, "ARCHIVING")
        return bool(named(events, "job_cancel_skipped", job_uuid=over))

    # One dry daemon, several polls: each warning once, the grace passes, the would-be cancel
    # is named once and the job that recovered is cleared, all in the dry run's memory.
    events = await run_until(t, after_first_poll, dry_run=True)
    check_event_fields(events)
    assert jobs_of(events, "job_warned", dry_run=True) == {over, recovers}
    assert len(named(events, "job_warned")) == 2
    one(events, "job_cancel_skipped", job_uuid=over, why="dry_run", dry_run=True)
    one(events, "job_cleared", job_uuid=recovers, dry_run=True)
    assert t.posts("sendEvent") == []
    assert t.posts("cancel") == []
    assert decisions_in_store(t)["decisions"] == {}

    # Live: the job's subscribers hear of it first, and the cancel waits a whole grace.
    t.write_config([GRACE_RULE])
    third = await t.run_once()
    one(third, "job_warned", job_uuid=over, dry_run=False)
    assert t.posts("sendEvent") == [over]
    assert t.posts("cancel") == []
    warned_at = time.monotonic()
    await anyio.sleep(max(0.0, 1.1 - (time.monotonic() - warned_at)))
    fourth = await t.run_once()
    assert t.posts("cancel") == [over]
    one(fourth, "job_cancelled", job_uuid=over)
    assert not named(fourth, "job_warned")


async def test_a_dry_run_resumes_no_cancel_a_real_run_left_pending(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "j", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    uuid = t.uuid("j")
    with StateStore.open(t.state_path) as store:
        store.observe_jobs({uuid: "RUNNING"}, datetime.now(UTC))
        store.record_match(uuid, LONG_RUN["name"], datetime.now(UTC))
        store.begin_cancel(uuid, LONG_RUN["name"], datetime.now(UTC))  # decided, never sent
    events = await t.run_once(dry_run=True)
    assert t.posts("cancel") == []
    assert not named(events, "job_cancel_requested")
    with StateStore.open(t.state_path) as store:
        assert [c.job_uuid for c in store.pending_cancels()] == [uuid]


def test_the_command_line_dry_run_repeated_names_the_same_jobs(tenant: TenantFactory) -> None:
    """The reproduction as a user runs it: `run --once --dry-run` three times on one store."""
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    runs = []
    for _ in range(3):
        done = t.command("run", "-c", str(t.config_path), "--once", "--dry-run")
        assert done.returncode == 0, done.stderr
        runs.append(parse_lines(done.stdout))
    assert decided(runs[0]) == decided(runs[1]) == decided(runs[2])
    assert jobs_of(runs[2], "job_cancel_skipped", why="dry_run") == t.uuids("over-a", "over-b")
    assert decisions_in_store(t)["decisions"] == {}
