"""End to end, with a page size far below the number of active jobs.

The simulator answers searches as the Jobs service's code does (`watchdog/sim/listing.py`): no
`startAfter` paging, `ALL_JOBS` as an own page with a shared page appended. A daemon that paged
any other way would fail every poll here, or miss jobs.
"""

from __future__ import annotations

import itertools
from typing import Any

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

PAGE = 5
OFFENDER = {"status": "RUNNING", "remoteStarted": "-13h"}
FINE = ({"status": "RUNNING", "remoteStarted": "-1h"}, {"status": "QUEUED"}, {"status": "PENDING"})


def fleet() -> dict[str, Any]:
    """40 active own jobs (8 offenders), 12 shared by bob (2 would be offenders), and noise."""
    jobs: list[dict[str, Any]] = []
    for i in range(40):
        job = OFFENDER if i % 5 == 0 else FINE[i % 3]
        jobs.append({**job, "name": f"own-{i:02d}"})
    for i in range(12):
        job = OFFENDER if i % 6 == 0 else FINE[i % 3]
        jobs.append({**job, "name": f"shared-{i:02d}", "owner": BOB, "shared_with": [USER]})
    jobs += [{"status": "FINISHED", "name": f"done-{i}"} for i in range(6)]
    jobs += [{**OFFENDER, "name": f"bob-private-{i}", "owner": BOB} for i in range(3)]
    return base_fleet(jobs)


def active(t: Any, owner: str) -> set[str]:
    return {
        u
        for u in t.sim.uuids()
        if (j := t.sim.job(u))["owner"] == owner
        and j["status"] not in {"FINISHED", "FAILED", "CANCELLED"}
        and (owner == USER or USER in t.sim.shared_with(u))
    }


OWN_OFFENDERS = [f"own-{i:02d}" for i in range(40) if i % 5 == 0]
SHARED_OFFENDERS = [f"shared-{i:02d}" for i in range(12) if i % 6 == 0]


async def test_small_pages_see_every_job_once_cancel_exactly_the_offenders_and_repeat_nothing(
    tenant: TenantFactory,
) -> None:
    t = tenant(fleet())
    t.write_config(
        [LONG_RUN],
        poll={"page_size": PAGE, "list_type": "ALL_JOBS"},
        safety={"max_cancels_per_poll": 20, "max_cancels_per_hour": 100},
    )
    own, shared = active(t, USER), active(t, BOB)
    own_offenders, shared_offenders = t.uuids(*OWN_OFFENDERS), t.uuids(*SHARED_OFFENDERS)
    assert (len(own), len(shared), len(own_offenders), len(shared_offenders)) == (40, 12, 8, 2)
    ordered = sorted(own | shared)
    # The offenders are spread over many pages, and shared uuids sort between own ones.
    assert len({ordered.index(u) // PAGE for u in own_offenders}) >= 4
    owners = [t.sim.job(u)["owner"] for u in ordered]
    assert sum(a != b for a, b in itertools.pairwise(owners)) >= 6

    first = await t.run_once()
    check_event_fields(first)

    assert not named(first, "poll_failed")
    poll = one(first, "poll_completed")
    assert poll["jobs_seen"] == len(own) + len(shared)
    # Every active job, own or shared, was evaluated exactly once (no job twice, none missed).
    matched = [e["job_uuid"] for e in named(first, "rule_matched")]
    assert sorted(matched) == sorted(own_offenders | shared_offenders)
    # Tapis saw a cancel for exactly the own offenders, each once, and each was confirmed.
    assert sorted(t.posts("cancel")) == sorted(own_offenders)
    assert jobs_of(first, "job_cancelled") == own_offenders
    assert all(t.sim.job(u)["status"] == "CANCELLED" for u in own_offenders)
    # A shared job is never ours to cancel: skipped before any request.
    assert jobs_of(first, "job_cancel_skipped", why="not_authorized") == shared_offenders
    assert all(t.sim.job(u)["status"] == "RUNNING" for u in shared_offenders)
    # Pages by condition, both list types on their own, never ALL_JOBS nor startAfter/skip.
    searches = [r for r in t.sim.requests if r.endpoint == "search"]
    assert {r.params["listType"][0] for r in searches} == {"MY_JOBS", "SHARED_JOBS"}
    assert len(searches) >= (40 // PAGE) + (12 // PAGE)
    assert not [r for r in searches if {"startAfter", "skip", "computeTotal"} & set(r.params)]
    assert all(r.status == 200 for r in searches)
    t.sim.clear_requests()

    second = await t.run_once()
    assert not named(second, "poll_failed")
    assert one(second, "poll_completed")["jobs_seen"] == len(own) + len(shared) - len(own_offenders)
    assert t.posts("cancel") == []
    for name in ("rule_matched", "job_cancel_requested", "job_cancelled", "job_cancel_skipped"):
        assert named(second, name) == [], name
