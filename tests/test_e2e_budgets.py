"""End to end: budgets across jobs on simulated fleets the daemon has not seen.

`run --once` in this process against the simulator over real HTTP through real tapipy; each run
is a fresh daemon on the same state store, so the second run is also a restart.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from test_e2e_harness import PASSWORD, base_fleet, check_event_fields, jobs_of, named, one

from watchdog.service.daemon import build_daemon

if TYPE_CHECKING:
    from test_e2e_harness import TenantFactory

pytestmark = pytest.mark.anyio

SWEEP: dict[str, Any] = {
    "name": "sweep-daily",
    "match": {"app": "opensees*", "tags_any": ["sweep"]},
    "window": "24h",
    "limit": {"node_hours": 100},
    "action": "cancel",
}


def sweep(name: str, status: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "appId": "opensees-mp", "tags": ["sweep"], **fields}


FLEET = [
    sweep("sweep-running", "RUNNING", remoteStarted="-12h", nodeCount=10),  # 120 node hours
    sweep("sweep-queued-1", "QUEUED", created="-3h"),
    sweep("sweep-queued-2", "PENDING", created="-1h"),
    {"name": "lab-queued", "status": "QUEUED", "appId": "namd", "tags": ["sweep"]},
    {
        "name": "lab-running",
        "status": "RUNNING",
        "appId": "namd",
        "remoteStarted": "-30h",
        "nodeCount": 50,
    },
]


async def test_over_its_node_hour_budget_only_the_groups_queued_jobs_are_cancelled(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet(FLEET))
    t.write_config([], budgets=[SWEEP])
    queued = t.uuids("sweep-queued-1", "sweep-queued-2")

    first = await t.run_once()
    check_event_fields(first)
    exceeded = one(first, "budget_exceeded")
    assert (exceeded["budget"], exceeded["usage"], exceeded["limit"], exceeded["unit"]) == (
        "sweep-daily",
        pytest.approx(120, abs=0.1),
        100.0,
        "node_hours",
    )
    assert set(t.posts("cancel")) == queued
    assert jobs_of(first, "job_cancelled", rule="sweep-daily") == queued
    reasons = {e["reason"] for e in named(first, "job_cancel_requested")}
    assert reasons == {"sweep-daily: 120 of 100 node hours in the last 1d"}
    for name in ("sweep-running", "lab-queued", "lab-running"):
        assert t.sim.job(t.uuid(name))["status"] in {"RUNNING", "QUEUED"}, name

    # A restart: nothing cancelled twice, the budget's level is known, so no second event.
    t.sim.clear_requests()
    second = await t.run_once()
    assert t.posts("cancel") == []
    assert not named(second, "budget_exceeded")
    assert not named(second, "job_cancel_requested")


async def test_a_count_limit_cancels_exactly_the_newest_excess(tenant: TenantFactory) -> None:
    jobs = [
        sweep("oldest", "RUNNING", created="-9h", remoteStarted="-8h"),
        sweep("old", "QUEUED", created="-8h"),
        sweep("middle", "RUNNING", created="-7h", remoteStarted="-6h"),
        sweep("newer", "RUNNING", created="-3h", remoteStarted="-2h"),
        sweep("newest", "QUEUED", created="-1h"),
    ]
    t = tenant(base_fleet(jobs))
    lanes = {
        "name": "lanes",
        "match": {"tags_any": ["sweep"]},
        "limit": {"active_jobs": 3},
        "action": "cancel",
    }
    t.write_config([], budgets=[lanes])
    events = await t.run_once()
    assert set(t.posts("cancel")) == t.uuids("newer", "newest")
    assert jobs_of(events, "job_cancelled", rule="lanes") == t.uuids("newer", "newest")
    assert one(events, "budget_exceeded")["reason"] == "lanes: 5 of 3 active jobs"


async def test_a_dry_run_names_every_would_be_cancel_and_sends_none(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet(FLEET))
    t.write_config([], budgets=[SWEEP])
    events = await t.run_once(dry_run=True)
    assert t.posts("cancel") == []
    skipped = jobs_of(events, "job_cancel_skipped", why="dry_run", rule="sweep-daily")
    assert skipped == t.uuids("sweep-queued-1", "sweep-queued-2")
    assert one(events, "budget_exceeded")["dry_run"] is True


ENDED_FLEET = [
    # Ended inside the window: 10 nodes x 8 h = 80 node hours.
    sweep(
        "sweep-done",
        "FINISHED",
        created="-21h",
        remoteStarted="-20h",
        remoteEnded="-12h",
        ended="-11h50m",
        nodeCount=10,
    ),
    # Ended before the window: counts nothing.
    sweep(
        "sweep-old",
        "FINISHED",
        created="-40h",
        remoteStarted="-39h",
        remoteEnded="-30h",
        ended="-30h",
        nodeCount=10,
    ),
    sweep("sweep-running", "RUNNING", remoteStarted="-3h", nodeCount=10),  # 30 node hours
    sweep("sweep-queued", "QUEUED", created="-1h"),
    {
        "name": "lab-done",
        "status": "FINISHED",
        "appId": "namd",
        "remoteStarted": "-10h",
        "remoteEnded": "-2h",
        "ended": "-2h",
        "nodeCount": 99,
    },
    {"name": "lab-queued", "status": "QUEUED", "appId": "namd", "tags": ["sweep"]},
]


async def test_ended_jobs_fill_the_window_and_a_restart_neither_loses_nor_repeats(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet(ENDED_FLEET))
    t.write_config([], budgets=[SWEEP])

    first = await t.run_once()
    check_event_fields(first)
    exceeded = one(first, "budget_exceeded")
    assert exceeded["usage"] == pytest.approx(110, abs=0.1)  # 80 ended + 30 running
    assert t.posts("cancel") == [t.uuid("sweep-queued")]
    assert jobs_of(first, "job_cancelled", rule="sweep-daily") == {t.uuid("sweep-queued")}
    assert t.sim.job(t.uuid("sweep-running"))["status"] == "RUNNING"
    assert t.sim.job(t.uuid("lab-queued"))["status"] == "QUEUED"
    searches = [r.params for r in t.sim.requests if r.endpoint == "search"]
    ended_searches = [p for p in searches if "ended.gt" in p]
    assert ended_searches
    assert all(p["status.in"] == ["CANCELLED,FAILED,FINISHED"] for p in ended_searches)

    # A restart, with a new queued job of the group: the ended job is no longer in the span
    # searched (it ended before the last look), yet its usage is kept, once.
    t.sim.clear_requests()
    late = t.sim.add_job(sweep("sweep-late", "QUEUED"))
    second = await t.run_once()
    assert t.posts("cancel") == [late]
    (requested,) = named(second, "job_cancel_requested")
    assert requested["reason"] == "sweep-daily: 110 of 100 node hours in the last 1d"
    assert not named(second, "budget_exceeded")


def test_the_budgets_command_prints_figures_a_hand_computation_gives(
    tenant: TenantFactory,
) -> None:
    fleet = [
        {**job, "maxMinutes": 300} if job["name"] == "sweep-running" else job for job in ENDED_FLEET
    ]
    t = tenant(base_fleet(fleet))
    lanes = {
        "name": "lanes",
        "match": {"tags_any": ["sweep"]},
        "limit": {"active_jobs": 3},
        "action": "warn",
    }
    t.write_config([], budgets=[SWEEP, lanes])
    done = t.command("budgets", "--json", "-c", str(t.config_path))
    assert done.returncode == 0, done.stderr
    sweep_line, lanes_line = (json.loads(line) for line in done.stdout.splitlines())
    # 10 nodes x 8 h ended inside the window + 10 nodes x 3 h running; 2 h more to maxMinutes.
    assert sweep_line["usage"] == pytest.approx(110, abs=0.1)
    assert sweep_line["projected"] == pytest.approx(130, abs=0.1)
    assert (sweep_line["limit"], sweep_line["remaining"], sweep_line["level"]) == (100, 0, "over")
    assert sweep_line["acts_on"] == 1
    # Active jobs tagged sweep: sweep-running, sweep-queued, lab-queued.
    assert (lanes_line["usage"], lanes_line["remaining"], lanes_line["projected"]) == (3, 0, None)
    assert t.posts("cancel") == []
    text = t.command("budgets", "-c", str(t.config_path)).stdout.splitlines()
    assert text[0] == (
        "sweep-daily: 110 of 100 node hours in the last 1d, 0 remaining, 130 projected with "
        "running jobs at their maxMinutes [over: cancels 1 jobs]"
    )
    assert text[1] == "lanes: 3 of 3 active jobs, 0 remaining [ok]"


async def test_metrics_export_each_budgets_usage_and_limit(tenant: TenantFactory) -> None:
    t = tenant(base_fleet(ENDED_FLEET))
    t.write_config([], budgets=[SWEEP], metrics={"listen": "127.0.0.1:0"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E2E_TAPIS_PASSWORD", PASSWORD)
        daemon, server = build_daemon(t.config_path, dry_run=True, once=True)
    try:
        assert await daemon.serve() == 0
        assert daemon.metrics is not None
        text = daemon.metrics.render().decode()
    finally:
        daemon.store.close()
        if server is not None:
            server.close()
    labels = '{budget="sweep-daily",unit="node_hours"}'
    assert f"tapis_watchdog_budget_limit{labels} 100.0" in text
    usage = next(
        line
        for line in text.splitlines()
        if line.startswith(f"tapis_watchdog_budget_usage{labels}")
    )
    assert float(usage.split()[-1]) == pytest.approx(110, abs=0.1)
    # Exported from the start, so the first unconfirmed cancel of a budget fires its alert.
    assert 'tapis_watchdog_cancels_total{outcome="unconfirmed",rule="sweep-daily"} 0.0' in text
