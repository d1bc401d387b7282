"""End to end: the watchdog core against the simulator, over real HTTP and real tapipy.

Each test writes a configuration in product.md's schema, runs `run --once` (in this process,
events collected by a listener, or as a real subprocess reading its JSON lines), and checks the
events and the simulator's request log: which cancels and sendEvents Tapis actually received.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_e2e_harness import (
    BOB,
    LONG_RUN,
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
)

pytestmark = pytest.mark.anyio

JOB_EVENT_NAMES = ("rule_matched", "job_warned", "job_cancel_requested", "job_cancel_skipped")


# -- a fleet the watchdog has never seen ----------------------------------------------------------

NEVER_SEEN_RULES: list[dict[str, Any]] = [
    LONG_RUN,
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
    t.write_config([LONG_RUN], poll={"list_type": "SHARED_JOBS"})
    events = await t.run_once()
    check_event_fields(events)
    uuid = t.uuid("bob-shared")
    skipped = one(events, "job_cancel_skipped", job_uuid=uuid, owner=BOB)
    assert skipped["why"] == "not_authorized"
    assert one(events, "poll_completed")["jobs_seen"] == 1
    assert jobs_of(events, "rule_matched") == {uuid}
    # Sharing gives no right to cancel (Tapis would answer 401): nothing is sent at all.
    assert [r for r in t.sim.requests if r.endpoint in {"cancel", "status"}] == []
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
    # A cancel refused for the token that just expired (401) goes again after the new login:
    # each offender gets exactly one cancel Tapis accepted.
    accepted = [
        r.path.split("/")[3]
        for r in t.sim.requests
        if r.method == "POST" and r.endpoint == "cancel" and r.status == 200
    ]
    assert sorted(accepted) == sorted(expected)
    assert set(t.posts("cancel")) == set(expected)
    for uuid, rule in expected.items():
        assert one(events, "job_cancelled", job_uuid=uuid, rule=rule)["final_status"] == "CANCELLED"
    assert one(events, "poll_completed")["cancels"] == len(expected)
    errors = named(events, "tapis_error", http_status=503)
    assert errors
    assert all(e["operation"] and e["error"] for e in errors)
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
        LONG_RUN,
        {"name": "long-queue", "when": {"in_status_over": "2d"}, "action": "warn"},
    ]
    t.write_config(
        rules,
        poll={"list_type": "ALL_JOBS"},
        safety={"verify_timeout": "2s", "resend_after": "1s", "exempt": {"tags": ["keep"]}},
    )
    first = await t.run_once()
    # The shared job is skipped without a request: sharing gives no right to cancel.
    assert set(t.posts("cancel")) == t.uuids("offender", "ignored")
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
