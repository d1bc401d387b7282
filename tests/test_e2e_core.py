"""End to end: the watchdog core against the simulator, over real HTTP and real tapipy.

Each test writes a configuration in product.md's schema, runs `run --once` (in this process,
events collected by a listener, or as a real subprocess reading its JSON lines), and checks the
events and the simulator's request log: which cancels and sendEvents Tapis actually received.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from test_e2e_harness import (
    BOB,
    PASSWORD,
    USER,
    Event,
    Tenant,
    TenantFactory,
    base_fleet,
    check_event_fields,
    jobs_of,
    named,
    one,
    parse_lines,
    tenants,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

JOB_EVENT_NAMES = ("rule_matched", "job_warned", "job_cancel_requested", "job_cancel_skipped")


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[TenantFactory]:
    with tenants(tmp_path) as start:
        yield start


# -- a fleet the watchdog has never seen ----------------------------------------------------------

NEVER_SEEN_RULES: list[dict[str, Any]] = [
    {
        "name": "long-run",
        "match": {"status": "RUNNING"},
        "when": {"runtime_over": "12h"},
        "action": "cancel",
    },
    {
        "name": "bad-inputs",
        "when": {"input_matches": {"pattern": r"(^|/)scratch/|\.tmp$", "in": ["file_inputs"]}},
        "action": "cancel",
    },
    {
        "name": "bad-args",
        "when": {
            "input_matches": {
                "pattern": "--mem=9999G|--reservation=broken",
                "in": ["app_args", "container_args", "scheduler_options"],
            }
        },
        "action": "cancel",
    },
    {
        "name": "danger-env",
        "when": {"input_matches": {"pattern": "DANGER", "in": ["env"]}},
        "action": "cancel",
    },
    {
        "name": "stuck-staging",
        "match": {"status": ["STAGING_INPUTS", "STAGING_JOB"]},
        "when": {"in_status_over": "6h"},
        "action": "cancel",
    },
]

# name → the rule expected to cancel it (None: nothing happens to it)
NEVER_SEEN_JOBS: list[tuple[dict[str, Any], str | None]] = [
    ({"name": "run-over", "status": "RUNNING", "remoteStarted": "-12h05m"}, "long-run"),
    ({"name": "run-under", "status": "RUNNING", "remoteStarted": "-11h55m"}, None),
    (
        {
            "name": "input-bad",
            "status": "QUEUED",
            "inputs": ["tapis://corral/alice/scratch/mesh.msh"],
        },
        "bad-inputs",
    ),
    (
        {"name": "input-ok", "status": "QUEUED", "inputs": ["tapis://corral/alice/data/mesh.msh"]},
        None,
    ),
    (
        {
            "name": "arg-bad",
            "status": "RUNNING",
            "remoteStarted": "-1h",
            "app_args": ["--mem=9999G"],
        },
        "bad-args",
    ),
    (
        {"name": "sched-bad", "status": "PENDING", "scheduler_options": ["--reservation=broken"]},
        "bad-args",
    ),
    (
        {"name": "env-bad", "status": "RUNNING", "remoteStarted": "-1h", "env": {"MODE": "DANGER"}},
        "danger-env",
    ),
    # "DANGER" only in Tapis's own _tapisJobName variable: must not match an env rule.
    ({"name": "DANGER-lookalike", "status": "RUNNING", "remoteStarted": "-1h"}, None),
    (
        {
            "name": "stuck",
            "status": "STAGING_INPUTS",
            "created": "-8h",
            "lastUpdated": "-1m",
            "history": [
                ["PENDING", "-8h"],
                ["PROCESSING_INPUTS", "-7h50m"],
                ["STAGING_INPUTS", "-7h"],
            ],
        },
        "stuck-staging",
    ),
    (
        {
            "name": "staging-fresh",
            "status": "STAGING_INPUTS",
            "created": "-8h",
            "lastUpdated": "-1m",
            "history": [["PENDING", "-8h"], ["STAGING_INPUTS", "-5h50m"]],
        },
        None,
    ),
    ({"name": "processing", "status": "PROCESSING_INPUTS"}, None),
    ({"name": "staging-job", "status": "STAGING_JOB"}, None),
    ({"name": "submitting", "status": "SUBMITTING_JOB"}, None),
    ({"name": "archiving", "status": "ARCHIVING"}, None),
    ({"name": "blocked", "status": "BLOCKED"}, None),
    ({"name": "paused", "status": "PAUSED"}, None),
    # Terminal jobs that would match: never listed, never touched.
    ({"name": "done", "status": "FINISHED", "remoteStarted": "-20h", "ended": "-1h"}, None),
    ({"name": "failed", "status": "FAILED", "inputs": ["tapis://x/scratch/a.tmp"]}, None),
    ({"name": "cancelled", "status": "CANCELLED", "app_args": ["--mem=9999G"]}, None),
    # Other owners' jobs are invisible to MY_JOBS, shared or not.
    ({"name": "bob-long", "owner": BOB, "status": "RUNNING", "remoteStarted": "-20h"}, None),
    (
        {
            "name": "bob-shared",
            "owner": BOB,
            "status": "RUNNING",
            "remoteStarted": "-20h",
            "shared_with": [USER],
        },
        None,
    ),
]
# Matches long-run, but finishes between the listing and the cancel (in-process runs only).
FINISHING: dict[str, Any] = {"name": "finishing", "status": "RUNNING", "remoteStarted": "-13h"}


def never_seen_fleet(*, with_finishing: bool) -> dict[str, Any]:
    jobs = [job for job, _ in NEVER_SEEN_JOBS]
    if with_finishing:
        jobs.append(FINISHING)
    return base_fleet(jobs)


def expected_cancels(t: Tenant) -> dict[str, str]:
    return {t.uuid(str(job["name"])): rule for job, rule in NEVER_SEEN_JOBS if rule}


def active_alice_jobs(t: Tenant) -> int:
    return sum(
        1
        for uuid in t.sim.uuids()
        if t.sim.job(uuid)["owner"] == USER
        and t.sim.job(uuid)["status"] not in {"FINISHED", "FAILED", "CANCELLED"}
    )


async def test_never_seen_fleet_cancels_exactly_the_offenders(tenant: TenantFactory) -> None:
    t = tenant(never_seen_fleet(with_finishing=True))
    t.write_config(NEVER_SEEN_RULES)
    expected = expected_cancels(t)
    finishing = t.uuid("finishing")
    seen_active = active_alice_jobs(t)

    def finish_it(event: Event) -> None:
        # The job ends after the listing, right before the fresh status check.
        if event["event"] == "rule_matched" and event["job_uuid"] == finishing:
            t.sim.set_status(finishing, "FINISHED")

    events = await t.run_once(on_event=finish_it)
    check_event_fields(events)

    # Tapis received a cancel for exactly the offenders, once each.
    assert sorted(t.posts("cancel")) == sorted(expected)
    assert finishing not in t.posts("cancel")
    for uuid, rule in expected.items():
        one(events, "rule_matched", job_uuid=uuid, rule=rule, dry_run=False)
        one(events, "job_cancel_requested", job_uuid=uuid, rule=rule)
        done = one(events, "job_cancelled", job_uuid=uuid, rule=rule)
        assert done["final_status"] == "CANCELLED"
        assert done["status"] == "CANCELLED"
        assert done["latency_s"] > 0
        assert t.sim.job(uuid)["status"] == "CANCELLED"
    assert jobs_of(events, "rule_matched") == {*expected, finishing}

    skipped = one(events, "job_cancel_skipped", job_uuid=finishing)
    assert skipped["why"] == "already_terminal"
    assert skipped["rule"] == "long-run"
    assert "12h" in skipped["reason"]
    assert jobs_of(events, "job_cancel_skipped") == {finishing}

    # Reasons a person can read.
    assert "exceeds 12h" in one(events, "rule_matched", job_uuid=t.uuid("run-over"))["reason"]
    assert "STAGING_INPUTS" in one(events, "rule_matched", job_uuid=t.uuid("stuck"))["reason"]

    # Nobody else's jobs were seen, and the poll says what it did.
    owners = {e["owner"] for e in events if "job_uuid" in e}
    assert owners == {USER}
    poll = one(events, "poll_completed")
    assert poll["jobs_seen"] == seen_active
    assert poll["matches"] == len(expected) + 1
    assert poll["cancels"] == len(expected)
    assert poll["api_calls"] >= 1 + 2 * len(expected)
    assert isinstance(poll["duration_s"], float)
    assert poll["duration_s"] >= 0
    assert events[0]["event"] == "watchdog_started"
    assert events[-1]["event"] == "watchdog_stopped"
    assert not named(events, "poll_failed")
    assert not named(events, "job_cancel_unconfirmed")
    assert not t.posts("sendEvent")

    # Every search asked for active jobs of MY_JOBS only.
    searches = [r for r in t.sim.requests if r.endpoint == "search"]
    assert searches
    for request in searches:
        assert request.params.get("listType", ["MY_JOBS"]) == ["MY_JOBS"]
        assert "FINISHED" not in ",".join(request.params.get("status.in", []))


async def test_shared_jobs_are_seen_but_not_cancellable(tenant: TenantFactory) -> None:
    shared = {
        "name": "bob-shared",
        "owner": BOB,
        "status": "RUNNING",
        "remoteStarted": "-20h",
        "shared_with": [USER],
    }
    hidden = {"name": "bob-private", "owner": BOB, "status": "RUNNING", "remoteStarted": "-20h"}
    t = tenant(base_fleet([shared, hidden]))
    t.write_config(NEVER_SEEN_RULES[:1], poll={"list_type": "SHARED_JOBS"})
    events = await t.run_once()
    check_event_fields(events)
    uuid = t.uuid("bob-shared")
    skipped = one(events, "job_cancel_skipped", job_uuid=uuid, owner=BOB)
    assert skipped["why"] == "not_authorized"
    assert one(events, "poll_completed")["jobs_seen"] == 1
    assert jobs_of(events, "rule_matched") == {uuid}
    # The one cancel Tapis saw was refused with 401, and the job still runs.
    assert [(r.endpoint, r.status) for r in t.sim.requests if r.endpoint == "cancel"] == [
        ("cancel", 401)
    ]
    assert t.sim.job(uuid)["status"] == "RUNNING"
    assert not named(events, "job_cancel_failed")


# -- a real subprocess: events on stdout, and no secret anywhere ----------------------------------


def test_subprocess_run_once_cancels_offenders_and_leaks_no_secret(
    tenant: TenantFactory,
) -> None:
    fleet = never_seen_fleet(with_finishing=False)
    # Failures whose error texts get logged, and a token that expires during the run.
    fleet["faults"] = [
        {"kind": "error", "endpoint": "status", "count": 1, "status": 503},
        {"kind": "token_ttl", "endpoint": "tokens", "count": 1, "seconds": 1},
    ]
    t = tenant(fleet)
    t.write_config(NEVER_SEEN_RULES)
    expected = expected_cancels(t)

    done = t.command("run", "-c", str(t.config_path), "--once")
    assert done.returncode == 0, done.stderr
    events = parse_lines(done.stdout)
    check_event_fields(events)
    assert sorted(t.posts("cancel")) == sorted(expected)
    for uuid, rule in expected.items():
        assert one(events, "job_cancelled", job_uuid=uuid, rule=rule)["final_status"] == "CANCELLED"
    assert one(events, "poll_completed")["cancels"] == len(expected)
    started = one(events, "watchdog_started")
    assert started["rule_count"] == len(NEVER_SEEN_RULES)
    assert started["dry_run"] is False
    assert started["config_path"] == str(t.config_path)

    history = t.command("history", "-c", str(t.config_path), "--since", "1h", "--json")
    assert history.returncode == 0, history.stderr
    audit = parse_lines(history.stdout)
    assert {e["event"] for e in audit} >= {"job_cancel_requested", "job_cancelled"}

    secrets = {PASSWORD, *t.sim.tokens_seen}
    assert len(t.sim.tokens_seen) >= 1
    # Token parts too: the signed payload or the signature alone would be a leak.
    secrets |= {part for token in t.sim.tokens_seen for part in token.split(".")[1:]}
    state_bytes = b"".join(p.read_bytes() for p in t.state_path.parent.iterdir() if p.is_file())
    for secret in secrets:
        assert secret not in done.stdout
        assert secret not in done.stderr
        assert secret not in history.stdout
        assert secret.encode() not in state_bytes


# -- nothing repeated on the same state -----------------------------------------------------------


async def test_second_run_on_the_same_state_repeats_nothing(tenant: TenantFactory) -> None:
    jobs: list[dict[str, Any]] = [
        {"name": "offender", "status": "RUNNING", "remoteStarted": "-13h"},
        {"name": "ignored", "status": "RUNNING", "remoteStarted": "-13h", "cancel": "ignore"},
        {"name": "exempt", "status": "RUNNING", "remoteStarted": "-13h", "tags": ["keep"]},
        {"name": "queued-long", "status": "QUEUED", "remoteSubmitted": "-3d"},
        {
            "name": "bob-shared",
            "owner": BOB,
            "status": "RUNNING",
            "remoteStarted": "-13h",
            "shared_with": [USER],
        },
    ]
    t = tenant(base_fleet(jobs))
    rules = [
        NEVER_SEEN_RULES[0],
        {"name": "long-queue", "when": {"in_status_over": "2d"}, "action": "warn"},
    ]
    t.write_config(
        rules,
        poll={"list_type": "ALL_JOBS"},
        safety={"verify_timeout": "2s", "resend_after": "1s", "exempt": {"tags": ["keep"]}},
    )
    first = await t.run_once()
    assert set(t.posts("cancel")) == t.uuids("offender", "ignored", "bob-shared")
    assert t.posts("sendEvent") == [t.uuid("queued-long")]
    assert jobs_of(first, "job_cancel_skipped", why="exempt") == {t.uuid("exempt")}
    assert jobs_of(first, "job_cancel_skipped", why="not_authorized") == {t.uuid("bob-shared")}
    assert jobs_of(first, "job_cancel_unconfirmed") == {t.uuid("ignored")}
    t.sim.clear_requests()

    second = await t.run_once()
    assert t.posts("cancel") == []
    assert t.posts("sendEvent") == []
    for name in JOB_EVENT_NAMES:
        assert named(second, name) == [], name
    poll = one(second, "poll_completed")
    assert poll["cancels"] == 0
    assert poll["jobs_seen"] == 4  # everything but the cancelled offender


# -- dry run in its three forms -------------------------------------------------------------------

DRY_JOBS = [
    {"name": "over-a", "status": "RUNNING", "remoteStarted": "-13h"},
    {"name": "over-b", "status": "RUNNING", "remoteStarted": "-14h"},
    {"name": "queued-long", "status": "QUEUED", "remoteSubmitted": "-3d"},
]
DRY_RULES: list[dict[str, Any]] = [
    NEVER_SEEN_RULES[0],
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
        NEVER_SEEN_RULES[:1],
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
    t.write_config(NEVER_SEEN_RULES[:1], safety={"max_cancels_per_poll": 2})
    events = await t.run_once()
    check_event_fields(events)
    opened = one(events, "circuit_opened")
    assert "max_cancels_per_poll" in opened["reason"]
    assert t.posts("cancel") == []
    assert jobs_of(events, "job_cancel_skipped", why="circuit_open") == t.uuids("j0", "j1", "j2")
    assert not [r for r in t.sim.requests if r.endpoint == "status"]

    t.write_config(NEVER_SEEN_RULES[:1], safety={"max_cancels_per_poll": 3})
    again = await t.run_once()
    one(again, "circuit_closed")
    assert sorted(t.posts("cancel")) == sorted(t.uuids("j0", "j1", "j2"))
    assert len(named(again, "job_cancelled")) == 3


async def test_max_cancels_per_hour_counts_across_restarts(tenant: TenantFactory) -> None:
    jobs = [{"name": f"j{i}", "status": "RUNNING", "remoteStarted": "-13h"} for i in range(2)]
    t = tenant(base_fleet(jobs))
    t.write_config(NEVER_SEEN_RULES[:1], safety={"max_cancels_per_hour": 2})
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
    t.write_config(NEVER_SEEN_RULES[:1], safety={"verify_timeout": "3s", "resend_after": "1s"})
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
