"""End to end: decisions and actions: dry run, exemptions, grace, rule order, the breaker,
unconfirmed and failed cancels.

Each test writes a configuration in product.md's schema, runs `run --once` in this process
(events collected by a listener) against the simulator over real HTTP and real tapipy, and checks
the events and the simulator's request log: which cancels and sendEvents Tapis received.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from test_e2e_harness import (
    BOB,
    LONG_RUN,
    USER,
    TenantFactory,
    base_fleet,
    check_event_fields,
    jobs_of,
    named,
    one,
)

pytestmark = pytest.mark.anyio


# -- dry run in its three forms -------------------------------------------------------------------

DRY_JOBS = [
    {"name": "over-a", "status": "RUNNING", "remoteStarted": "-13h"},
    {"name": "over-b", "status": "RUNNING", "remoteStarted": "-14h"},
    {"name": "queued-long", "status": "QUEUED", "remoteSubmitted": "-3d"},
]
DRY_RULES: list[dict[str, Any]] = [
    LONG_RUN,
    {"name": "long-queue", "when": {"in_status_over": "2d"}, "action": "warn"},
]


@pytest.mark.parametrize("form", ["flag", "safety", "per_rule"])
async def test_dry_run_names_every_would_be_cancel_and_sends_nothing(
    tenant: TenantFactory, form: str
) -> None:
    t = tenant(base_fleet(DRY_JOBS))
    rules = [dict(rule) for rule in DRY_RULES]
    if form == "per_rule":
        rules = [{**rule, "dry_run": True} for rule in rules]
    t.write_config(rules, safety={"dry_run": True} if form == "safety" else None)
    events = await t.run_once(dry_run=form == "flag")
    check_event_fields(events)
    assert t.posts("cancel") == []
    assert t.posts("sendEvent") == []
    assert not [r for r in t.sim.requests if r.endpoint == "status"]
    offenders = t.uuids("over-a", "over-b")
    assert jobs_of(events, "job_cancel_skipped", why="dry_run", dry_run=True) == offenders
    assert jobs_of(events, "rule_matched", dry_run=True) == {*offenders, t.uuid("queued-long")}
    assert jobs_of(events, "job_warned", dry_run=True) == {t.uuid("queued-long")}
    assert not named(events, "job_cancel_requested")
    assert one(events, "poll_completed")["cancels"] == 0
    assert one(events, "watchdog_started")["dry_run"] is (form != "per_rule")
    for uuid in offenders:
        assert t.sim.job(uuid)["status"] == "RUNNING"


# -- exemptions -----------------------------------------------------------------------------------


async def test_exempt_tags_owners_and_uuids_are_never_acted_on(tenant: TenantFactory) -> None:
    jobs: list[dict[str, Any]] = [
        {"name": "tagged", "status": "RUNNING", "remoteStarted": "-13h", "tags": ["thesis", "x"]},
        {"name": "by-uuid", "status": "RUNNING", "remoteStarted": "-13h"},
        {
            "name": "bobs",
            "owner": BOB,
            "status": "RUNNING",
            "remoteStarted": "-13h",
            "shared_with": [USER],
        },
        {"name": "plain", "status": "RUNNING", "remoteStarted": "-13h", "tags": ["thesis-2"]},
    ]
    t = tenant(base_fleet(jobs))
    exempt = {"tags": ["thesis"], "owners": [BOB], "uuids": [t.uuid("by-uuid")]}
    t.write_config(
        [LONG_RUN],
        poll={"list_type": "ALL_JOBS"},
        safety={"exempt": exempt},
    )
    events = await t.run_once()
    check_event_fields(events)
    assert jobs_of(events, "job_cancel_skipped", why="exempt") == t.uuids(
        "tagged", "by-uuid", "bobs"
    )
    assert t.posts("cancel") == [t.uuid("plain")]
    assert jobs_of(events, "job_cancelled") == {t.uuid("plain")}
    assert sorted(set(t.gets("status"))) == [t.uuid("plain")]


# -- grace: warn first, act later, or clear -------------------------------------------------------


GRACE_RULE: dict[str, Any] = {
    "name": "grace-run",
    "match": {"status": "RUNNING"},
    "when": {"runtime_over": "1h"},
    "grace": "1s",
    "action": "cancel",
}


async def test_grace_warns_first_then_cancels_or_clears(tenant: TenantFactory) -> None:
    jobs = [
        {"name": "still-over", "status": "RUNNING", "remoteStarted": "-2h"},
        {"name": "recovers", "status": "RUNNING", "remoteStarted": "-2h"},
    ]
    t = tenant(base_fleet(jobs))
    grace = 1.0
    rule = {
        "name": "grace-run",
        "match": {"status": "RUNNING"},
        "when": {"runtime_over": "1h"},
        "grace": "1s",
        "action": "cancel",
    }
    t.write_config([rule])
    still, recovers = t.uuid("still-over"), t.uuid("recovers")

    first = await t.run_once()
    started = time.monotonic()
    check_event_fields(first)
    assert t.posts("cancel") == []
    assert sorted(t.posts("sendEvent")) == sorted([still, recovers])
    assert jobs_of(first, "job_warned", rule="grace-run") == {still, recovers}
    assert "cancel at" in one(first, "job_warned", job_uuid=still)["reason"]
    notes = [e for e in t.sim.history(still) if e["event"] == "JOB_USER_EVENT"]
    assert len(notes) == 1
    assert "grace-run" in notes[0]["description"]

    t.sim.set_status(recovers, "ARCHIVING")  # no longer RUNNING: stops violating
    await anyio.sleep(max(0.0, grace + 0.1 - (time.monotonic() - started)))
    t.sim.clear_requests()
    second = await t.run_once()
    check_event_fields(second)
    assert t.posts("cancel") == [still]
    assert t.posts("sendEvent") == []
    assert one(second, "job_cancelled", job_uuid=still)["rule"] == "grace-run"
    assert one(second, "job_cleared", job_uuid=recovers)["rule"] == "grace-run"
    assert not named(second, "job_warned")
    assert not named(second, "rule_matched")


async def test_warn_rule_warns_once_into_the_jobs_history(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "q", "status": "QUEUED", "remoteSubmitted": "-3d"}]))
    t.write_config([{"name": "long-queue", "when": {"in_status_over": "2d"}, "action": "warn"}])
    uuid = t.uuid("q")
    events = await t.run_once()
    assert one(events, "job_warned", job_uuid=uuid)["reason"].startswith("in QUEUED for")
    assert t.posts("sendEvent") == [uuid]
    assert [e["event"] for e in t.sim.history(uuid)].count("JOB_USER_EVENT") == 1
    assert t.posts("cancel") == []


# -- one action per job ---------------------------------------------------------------------------


async def test_first_acting_rule_in_file_order_wins(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "j", "status": "RUNNING", "remoteStarted": "-3h"}]))
    rules: list[dict[str, Any]] = [
        {"name": "tell", "when": {"runtime_over": "1h"}, "action": "warn"},
        {"name": "shadow", "when": {"runtime_over": "1h"}, "action": "cancel", "dry_run": True},
        {"name": "winner", "when": {"runtime_over": "2h"}, "action": "cancel"},
        {"name": "second", "when": {"runtime_over": "1h"}, "action": "cancel"},
    ]
    t.write_config(rules)
    uuid = t.uuid("j")
    events = await t.run_once()
    check_event_fields(events)
    assert {e["rule"] for e in named(events, "rule_matched", job_uuid=uuid)} == {
        "tell",
        "shadow",
        "winner",
        "second",
    }
    assert t.posts("cancel") == [uuid]
    one(events, "job_cancel_requested", rule="winner")
    one(events, "job_cancelled", rule="winner")
    one(events, "job_warned", rule="tell")
    one(events, "job_cancel_skipped", rule="shadow", why="dry_run")
    for name in ("job_cancel_requested", "job_cancel_skipped", "job_cancelled", "job_warned"):
        assert not named(events, name, rule="second")


# -- the circuit breaker --------------------------------------------------------------------------


async def test_breaker_opens_over_max_cancels_per_poll_and_closes_later(
    tenant: TenantFactory,
) -> None:
    jobs = [{"name": f"j{i}", "status": "RUNNING", "remoteStarted": "-13h"} for i in range(3)]
    t = tenant(base_fleet(jobs))
    t.write_config([LONG_RUN], safety={"max_cancels_per_poll": 2})
    events = await t.run_once()
    check_event_fields(events)
    opened = one(events, "circuit_opened")
    assert "max_cancels_per_poll" in opened["reason"]
    assert t.posts("cancel") == []
    assert jobs_of(events, "job_cancel_skipped", why="circuit_open") == t.uuids("j0", "j1", "j2")
    assert not [r for r in t.sim.requests if r.endpoint == "status"]

    t.write_config([LONG_RUN], safety={"max_cancels_per_poll": 3})
    again = await t.run_once()
    one(again, "circuit_closed")
    assert sorted(t.posts("cancel")) == sorted(t.uuids("j0", "j1", "j2"))
    assert len(named(again, "job_cancelled")) == 3


async def test_max_cancels_per_hour_counts_across_restarts(tenant: TenantFactory) -> None:
    jobs = [{"name": f"j{i}", "status": "RUNNING", "remoteStarted": "-13h"} for i in range(2)]
    t = tenant(base_fleet(jobs))
    t.write_config([LONG_RUN], safety={"max_cancels_per_hour": 2})
    first = await t.run_once()
    assert len(named(first, "job_cancelled")) == 2
    assert not named(first, "circuit_opened")

    late = t.sim.add_job({"name": "late", "status": "RUNNING", "remoteStarted": "-13h"})
    t.sim.clear_requests()
    second = await t.run_once()  # a new daemon on the same state: the hour is not over
    assert "max_cancels_per_hour" in one(second, "circuit_opened")["reason"]
    assert t.posts("cancel") == []
    assert jobs_of(second, "job_cancel_skipped", why="circuit_open") == {late}
    assert t.sim.job(late)["status"] == "RUNNING"


# -- unconfirmed cancels --------------------------------------------------------------------------


async def test_unconfirmed_cancel_is_resent_once_then_reported(tenant: TenantFactory) -> None:
    jobs = [
        {"name": "deaf", "status": "RUNNING", "remoteStarted": "-13h", "cancel": "ignore"},
        {"name": "slow", "status": "RUNNING", "remoteStarted": "-13h", "cancel": "ignore_first"},
    ]
    t = tenant(base_fleet(jobs))
    t.write_config([LONG_RUN], safety={"verify_timeout": "3s", "resend_after": "1s"})
    deaf, slow = t.uuid("deaf"), t.uuid("slow")
    events = await t.run_once()
    check_event_fields(events)
    assert sorted(t.posts("cancel")) == sorted([deaf, deaf, slow, slow])

    requested = named(events, "job_cancel_requested", job_uuid=deaf)
    assert [e.get("attempt") for e in requested] == [None, 2]
    assert "cancel sent again" in requested[1]["reason"]
    unconfirmed = one(events, "job_cancel_unconfirmed", job_uuid=deaf)
    assert unconfirmed["status"] == "RUNNING"
    assert "3s" in unconfirmed["reason"]
    assert not named(events, "job_cancelled", job_uuid=deaf)

    assert len(named(events, "job_cancel_requested", job_uuid=slow)) == 2
    confirmed = one(events, "job_cancelled", job_uuid=slow)
    assert confirmed["final_status"] == "CANCELLED"
    assert not named(events, "job_cancel_unconfirmed", job_uuid=slow)
    assert t.sim.job(slow)["status"] == "CANCELLED"


async def test_exempt_job_in_a_grace_rule_is_never_promised_a_cancel(
    tenant: TenantFactory,
) -> None:
    jobs: list[dict[str, Any]] = [
        {"name": "kept", "status": "RUNNING", "remoteStarted": "-2h", "tags": ["keep"]},
        {"name": "plain", "status": "RUNNING", "remoteStarted": "-2h"},
    ]
    t = tenant(base_fleet(jobs))
    rule = {"name": "grace-run", "when": {"runtime_over": "1h"}, "grace": "1h", "action": "cancel"}
    t.write_config([rule], safety={"exempt": {"tags": ["keep"]}})
    kept, plain = t.uuid("kept"), t.uuid("plain")
    events = await t.run_once()
    check_event_fields(events)
    # The plain job is warned that it will be cancelled; the exempt one never will be, so
    # neither it nor its subscribers are told so. Its exemption is named at once.
    assert t.posts("sendEvent") == [plain]
    assert jobs_of(events, "job_warned") == {plain}
    assert jobs_of(events, "job_cancel_skipped", why="exempt") == {kept}
    assert t.posts("cancel") == []
    t.sim.clear_requests()
    again = await t.run_once()
    assert t.posts("sendEvent") == []
    assert not named(again, "job_cancel_skipped")


async def test_a_job_that_ends_during_its_grace_is_cleared(tenant: TenantFactory) -> None:
    jobs = [
        {"name": "ends", "status": "RUNNING", "remoteStarted": "-2h"},
        {"name": "quiet", "status": "RUNNING", "remoteStarted": "-10m"},
    ]
    t = tenant(base_fleet(jobs))
    rule = {"name": "grace-run", "when": {"runtime_over": "1h"}, "grace": "1h", "action": "cancel"}
    t.write_config([rule])
    ends, quiet = t.uuid("ends"), t.uuid("quiet")
    first = await t.run_once()
    assert jobs_of(first, "job_warned") == {ends}

    # It finishes by itself: the poll no longer lists it, and its grace period is over.
    t.sim.set_status(ends, "FINISHED", "NORMAL_COMPLETION")
    t.sim.clear_requests()
    second = await t.run_once()
    check_event_fields(second)
    cleared = one(second, "job_cleared", job_uuid=ends)
    assert cleared["status"] == "FINISHED"
    assert "FINISHED" in cleared["reason"]
    assert t.posts("cancel") == []
    # One look-up of the job that left, none of a job that never matched.
    assert [r.path for r in t.sim.requests if r.endpoint == "get"] == [f"/v3/jobs/{ends}"]
    assert quiet not in jobs_of(second, "job_cleared")

    t.sim.clear_requests()
    third = await t.run_once()
    assert not named(third, "job_cleared")
    assert not [r for r in t.sim.requests if r.endpoint == "get"]


async def test_warn_rules_do_not_warn_exempt_jobs(tenant: TenantFactory) -> None:
    jobs: list[dict[str, Any]] = [
        {"name": "kept", "status": "RUNNING", "remoteStarted": "-2h", "tags": ["keep"]},
        {"name": "plain", "status": "RUNNING", "remoteStarted": "-2h"},
    ]
    t = tenant(base_fleet(jobs))
    rule = {"name": "heads-up", "when": {"runtime_over": "1h"}, "action": "warn"}
    t.write_config([rule], safety={"exempt": {"tags": ["keep"]}})
    kept, plain = t.uuid("kept"), t.uuid("plain")
    events = await t.run_once()
    check_event_fields(events)
    # Exempt means never acted on: the match is logged, but nothing goes into its history.
    assert jobs_of(events, "rule_matched") == {kept, plain}
    assert jobs_of(events, "job_warned") == {plain}
    assert t.posts("sendEvent") == [plain]


async def test_cancel_that_failed_while_tapis_was_unavailable_is_tried_next_poll(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet([{"name": "j", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    uuid = t.uuid("j")
    t.sim.set_fault(kind="error", endpoint="cancel", status=503)  # outlasts the retries
    first = await t.run_once()
    failed = one(first, "job_cancel_failed", job_uuid=uuid)
    assert failed["http_status"] == 503
    assert failed["error"]
    assert t.sim.job(uuid)["status"] == "RUNNING"
    assert not named(first, "job_cancelled")

    t.sim.clear_faults()
    t.sim.clear_requests()
    second = await t.run_once()
    assert t.posts("cancel") == [uuid]
    assert one(second, "job_cancelled", job_uuid=uuid)["final_status"] == "CANCELLED"
    assert not named(second, "rule_matched")


async def test_cancel_refused_by_tapis_is_not_repeated(tenant: TenantFactory) -> None:
    job: dict[str, Any] = {
        "name": "bobs",
        "owner": BOB,
        "status": "RUNNING",
        "remoteStarted": "-13h",
        "shared_with": [USER],
    }
    t = tenant(base_fleet([job]))
    t.write_config([LONG_RUN], poll={"list_type": "SHARED_JOBS"})
    first = await t.run_once()
    one(first, "job_cancel_skipped", why="not_authorized")
    t.sim.clear_requests()
    second = await t.run_once()
    assert t.posts("cancel") == []
    assert not named(second, "job_cancel_skipped")


async def test_job_ending_between_status_check_and_cancel_is_skipped_as_terminal(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet([{"name": "j", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    uuid = t.uuid("j")

    def finish_after_status_check(endpoint: str, job_uuid: str | None) -> None:
        if endpoint == "status" and job_uuid == uuid:
            t.sim.after_request = None
            t.sim.set_status(uuid, "FINISHED")

    t.sim.after_request = finish_after_status_check
    events = await t.run_once()
    check_event_fields(events)
    assert [(r.endpoint, r.status) for r in t.sim.requests if r.endpoint == "cancel"] == [
        ("cancel", 409)
    ]
    assert one(events, "job_cancel_skipped", job_uuid=uuid)["why"] == "already_terminal"
    assert not named(events, "job_cancel_failed")
    assert not named(events, "job_cancel_requested")
    assert one(events, "poll_completed")["cancels"] == 0
