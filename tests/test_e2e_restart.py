"""End to end: restarts, expiring tokens, churn between pages, failed polls, remembered clocks.

The daemon runs against the simulator over real HTTP and real tapipy; restarts are a second
daemon on the same state file (or a real subprocess killed with SIGKILL).
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from test_e2e_harness import (
    LONG_RUN,
    Event,
    TenantFactory,
    base_fleet,
    check_event_fields,
    jobs_of,
    named,
    one,
)

from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

WARN_ALL: dict[str, Any] = {"name": "see-all", "when": {"age_over": "1m"}, "action": "warn"}


def craft_intent(state_path: Path, job_uuid: str, rule: str, *, sent: bool = False) -> None:
    """The state a daemon leaves when it is killed right after writing a cancel intent (or,
    `sent`, right after recording that Tapis accepted it, before closing the decision)."""
    begun = datetime.now(UTC) - timedelta(seconds=2)
    with StateStore.open(state_path) as store:
        store.observe_jobs({job_uuid: "RUNNING"}, begun)
        store.record_match(job_uuid, rule, begun)
        cancel_id = store.begin_cancel(job_uuid, rule, begun)
        if sent:
            store.mark_cancel_sent(cancel_id, begun)


# -- restart safety -------------------------------------------------------------------------------


async def test_intent_of_a_cancel_that_landed_is_confirmed_without_a_second_cancel(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet([{"name": "j", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    uuid = t.uuid("j")
    craft_intent(t.state_path, uuid, "long-run")
    t.sim.set_status(uuid, "CANCELLED")  # the cancel went out before the process died
    events = await t.run_once()
    check_event_fields(events)
    assert t.posts("cancel") == []
    done = one(events, "job_cancelled", job_uuid=uuid)
    assert done["final_status"] == "CANCELLED"
    assert done["rule"] == "long-run"
    assert not named(events, "job_cancel_skipped")
    assert not named(events, "rule_matched")


async def test_intent_never_sent_is_sent_once_after_a_status_check(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "j", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    uuid = t.uuid("j")
    craft_intent(t.state_path, uuid, "long-run")
    events = await t.run_once()
    check_event_fields(events)
    assert t.posts("cancel") == [uuid]
    job_requests = [r.endpoint for r in t.sim.requests if uuid in r.path]
    assert job_requests.index("status") < job_requests.index("cancel")
    assert one(events, "job_cancelled", job_uuid=uuid)["final_status"] == "CANCELLED"
    assert not named(events, "rule_matched")
    assert not named(events, "job_cancel_skipped")

    t.sim.clear_requests()
    again = await t.run_once()
    assert t.posts("cancel") == []
    assert not named(again, "job_cancelled")


@pytest.mark.parametrize("sent", [False, True], ids=["intent", "sent"])
async def test_resumed_cancel_that_stays_unconfirmed_is_not_sent_again_next_run(
    tenant: TenantFactory, sent: bool
) -> None:
    job = {"name": "deaf", "status": "RUNNING", "remoteStarted": "-13h", "cancel": "ignore"}
    t = tenant(base_fleet([job]))
    # The daemon was stopped as long ago as verify_timeout: an intent that never went out
    # must still be sent, and followed for a whole verify_timeout.
    t.write_config([LONG_RUN], safety={"verify_timeout": "2s", "resend_after": "1s"})
    uuid = t.uuid("deaf")
    craft_intent(t.state_path, uuid, "long-run", sent=sent)
    first = await t.run_once()
    one(first, "job_cancel_unconfirmed", job_uuid=uuid)
    # An intent is sent now, then once more after resend_after; a cancel sent before the
    # restart is owed its one re-send (overdue: at once), and no more.
    expected = [uuid] if sent else [uuid, uuid]
    assert t.posts("cancel") == expected
    assert len(named(first, "job_cancel_requested", job_uuid=uuid)) == len(t.posts("cancel"))

    t.sim.clear_requests()
    second = await t.run_once()
    assert t.posts("cancel") == []
    assert not named(second, "job_cancel_requested")
    assert not named(second, "rule_matched")


def test_sigkill_after_the_cancel_request_never_sends_a_second_cancel(
    tenant: TenantFactory,
) -> None:
    job = {"name": "j", "status": "RUNNING", "remoteStarted": "-13h", "cancel_delay": 1}
    t = tenant(base_fleet([job]))
    t.write_config([LONG_RUN])
    uuid = t.uuid("j")
    proc = t.popen_run("--once")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if '"job_cancel_requested"' in line:
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert t.posts("cancel") == [uuid]

    done = t.command("run", "-c", str(t.config_path), "--once")
    assert done.returncode == 0, done.stderr
    assert t.posts("cancel") == [uuid]
    assert '"job_cancelled"' in done.stdout
    assert t.sim.job(uuid)["status"] == "CANCELLED"
    with StateStore.open(t.state_path) as store:
        record = store.cancel_for(uuid, "long-run")
        assert record is not None
        assert record.outcome == "cancelled"
        assert record.final_status == "CANCELLED"
        assert store.pending_cancels() == []


# -- Tapis trouble during a poll ------------------------------------------------------------------


async def test_token_expiring_mid_poll_logs_in_again_and_the_poll_completes(
    tenant: TenantFactory,
) -> None:
    jobs = [{"name": f"j{i}", "status": "RUNNING", "remoteStarted": "-13h"} for i in range(6)]
    t = tenant(base_fleet(jobs, token_ttl="10m"))
    t.write_config([LONG_RUN], poll={"page_size": 2})

    def expire(searches: int) -> None:
        if searches == 1:
            t.sim.advance(timedelta(minutes=11))  # every token issued so far has expired

    t.sim.after_search = expire
    events = await t.run_once()
    check_event_fields(events)
    assert not named(events, "poll_failed")
    assert one(events, "poll_completed")["jobs_seen"] == 6
    logins = [r for r in t.sim.requests if r.endpoint == "tokens"]
    assert len(logins) >= 2
    assert any(r.status == 401 for r in t.sim.requests)
    assert sorted(t.posts("cancel")) == sorted(t.sim.uuids())
    assert len(named(events, "job_cancelled")) == 6


async def test_every_job_that_stays_active_is_evaluated_while_pages_churn(
    tenant: TenantFactory,
) -> None:
    statuses = ["QUEUED", "RUNNING", "PENDING", "STAGING_INPUTS", "BLOCKED"]
    jobs = [
        {"name": f"j{i:02d}", "status": statuses[i % len(statuses)], "created": "-2h"}
        for i in range(12)
    ]
    t = tenant(base_fleet(jobs))
    t.write_config([WARN_ALL], poll={"page_size": 2})
    uuids = sorted(t.sim.uuids())
    ended = {uuids[1], uuids[6], uuids[10]}
    moved = {uuids[3], uuids[8]}

    def churn(searches: int) -> None:
        if searches == 1:
            t.sim.set_status(uuids[1], "FINISHED")
            t.sim.set_status(uuids[3], "ARCHIVING")
            t.sim.add_job({"name": "arrival", "status": "PENDING", "created": "-2h"})
        elif searches == 2:
            t.sim.set_status(uuids[6], "FAILED")
            t.sim.set_status(uuids[8], "PAUSED")
        elif searches == 3:
            t.sim.set_status(uuids[10], "CANCELLED")

    t.sim.after_search = churn
    events = await t.run_once()
    assert t.sim.searches >= 4
    assert not named(events, "poll_failed")
    stayed = set(uuids) - ended
    assert moved <= stayed
    assert stayed <= jobs_of(events, "rule_matched", rule="see-all")
    assert stayed <= jobs_of(events, "job_warned", rule="see-all")


@pytest.mark.parametrize("when", ["every_page", "after_first_page"])
async def test_a_failed_poll_cancels_nothing(tenant: TenantFactory, when: str) -> None:
    jobs = [{"name": f"j{i}", "status": "RUNNING", "remoteStarted": "-13h"} for i in range(6)]
    t = tenant(base_fleet(jobs))
    t.write_config([LONG_RUN], poll={"page_size": 2})
    if when == "every_page":
        t.sim.set_fault(kind="error", endpoint="search", status=503)
    else:

        def fail_later(searches: int) -> None:
            if searches == 1:
                t.sim.set_fault(kind="error", endpoint="search", status=500)

        t.sim.after_search = fail_later
    # `run --once` exits 1 when its poll failed, so cron can tell it from a quiet night.
    events = await t.run_once(expect_code=1)
    check_event_fields(events)
    failed = one(events, "poll_failed")
    assert failed["error"]
    assert failed["api_calls"] >= 1
    assert not named(events, "poll_completed")
    assert t.posts("cancel") == []
    assert not [r for r in t.sim.requests if r.endpoint == "status"]
    for name in ("rule_matched", "job_cancel_requested", "job_cancel_skipped"):
        assert not named(events, name)


# -- the clock of time-in-status ------------------------------------------------------------------

STUCK_JOB: dict[str, Any] = {
    "name": "stuck",
    "status": "STAGING_INPUTS",
    "created": "-8h",
    "lastUpdated": "-1m",
    "history": [["PENDING", "-8h"], ["STAGING_INPUTS", "-7h"]],
}
STAGING_WARN: dict[str, Any] = {
    "name": "staging-6h",
    "match": {"status": "STAGING_INPUTS"},
    "when": {"in_status_over": "6h"},
    "action": "warn",
}
STAGING_CANCEL: dict[str, Any] = {
    "name": "staging-6h30m",
    "match": {"status": "STAGING_INPUTS"},
    "when": {"in_status_over": "6h30m"},
    "action": "cancel",
}


async def test_time_in_status_from_history_survives_a_restart(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([STUCK_JOB]))
    uuid = t.uuid("stuck")
    t.write_config([STAGING_WARN])
    first = await t.run_once()
    assert t.gets("history") == [uuid]
    assert "7h" in one(first, "job_warned", job_uuid=uuid)["reason"]

    # Restarted with a new rule, and Tapis's history endpoint now failing: the clock is known.
    t.sim.set_fault(kind="error", endpoint="history", status=500)
    t.sim.clear_requests()
    t.write_config([STAGING_WARN, STAGING_CANCEL])
    second: list[Event] = await t.run_once()
    assert t.gets("history") == []
    assert one(second, "rule_matched", job_uuid=uuid)["rule"] == "staging-6h30m"
    assert t.posts("cancel") == [uuid]
    assert one(second, "job_cancelled", job_uuid=uuid)["final_status"] == "CANCELLED"
    assert not named(second, "job_warned")


async def test_without_a_remembered_clock_a_failed_history_matches_nothing(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet([STUCK_JOB]))
    t.write_config([STAGING_CANCEL])
    t.sim.set_fault(kind="error", endpoint="history", status=500)
    events = await t.run_once()
    assert t.gets("history")
    assert not named(events, "rule_matched")
    assert t.posts("cancel") == []
    assert one(events, "poll_completed")["matches"] == 0
