"""A poll's reads and writes of the state store: a fixed number of statements, the same rows.

The decision step of a poll (record the listing, read the snapshot, plan, write the plan) runs a
number of SQL statements that does not grow with the number of jobs: counted with SQLite's trace
callback on a real file, for 100 and for 1,000 jobs. The batched writes leave exactly the rows the
one-row methods leave.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from watchdog.config.model import ExemptSettings
from watchdog.config.rule_schema import RuleConfig
from watchdog.jobs import Job
from watchdog.rules.evaluate import compile_rule
from watchdog.rules.poll_plan import PlanSettings, plan_poll
from watchdog.state.snapshot import StateChanges
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from pathlib import Path

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
H = timedelta(hours=1)
RULES = [
    compile_rule(RuleConfig.model_validate(data))
    for data in (
        {"name": "long", "when": {"runtime_over": "12h"}, "action": "cancel"},
        {"name": "tell", "when": {"runtime_over": "6h"}, "action": "warn"},
        {"name": "grace", "when": {"runtime_over": "3h"}, "grace": "1h", "action": "cancel"},
        {
            "name": "stuck",
            "match": {"status": "STAGING_INPUTS"},
            "when": {"in_status_over": "1h"},
            "action": "cancel",
        },
    )
]
SETTINGS = PlanSettings(
    exempt=ExemptSettings(tags=("keep",)), max_cancels_per_poll=10, max_cancels_per_hour=50
)


def fleet(n: int, shift: float = 0) -> list[Job]:
    """`n` jobs: runtimes spread over 0-16 hours, every fifth one staging, every seventh exempt."""
    jobs = []
    for i in range(n):
        staging = i % 5 == 0
        jobs.append(
            Job(
                uuid=f"job-{i:05d}",
                status="STAGING_INPUTS" if staging else "RUNNING",
                remote_started=None if staging else NOW - ((i % 17) + shift) * H,
                created=NOW - 20 * H,
                tags=("keep",) if i % 7 == 0 else (),
            )
        )
    return jobs


def decision_step(store: StateStore, jobs: list[Job], now: datetime) -> dict[str, int]:
    """One poll's decision step, as `Actor.handle_poll` runs it; statements per part."""
    counts: dict[str, int] = {}
    seen: list[str] = []
    store.trace(seen.append)
    try:
        statuses = {job.uuid: job.status for job in jobs}
        snapshot = store.snapshot(statuses, now)
        counts["snapshot"] = len(seen)
        # The history step, as if every staging job's history said it entered 2 hours ago.
        entered = {job.uuid: now - 2 * H for job in jobs if job.uuid not in snapshot.status_entries}
        entered = {u: t for u, t in entered.items() if statuses[u] == "STAGING_INPUTS"}
        before = len(seen)
        plan = plan_poll(jobs, RULES, snapshot, now, SETTINGS, entered=entered)
        counts["plan"] = len(seen) - before
        before = len(seen)
        store.apply(plan.changes)
        counts["apply"] = len(seen) - before
    finally:
        store.trace(None)
    assert plan.matches > 0
    return counts


@pytest.mark.parametrize("polls", [1, 3])
def test_the_decision_step_costs_the_same_statements_for_100_and_1000_jobs(
    tmp_path: Path, polls: int
) -> None:
    costs = []
    for n in (100, 1000):
        with StateStore.open(tmp_path / f"{n}-{polls}.db") as store:
            for poll in range(polls):
                # Later polls: the jobs ran longer, graces end, warned matches clear.
                counts = decision_step(store, fleet(n, shift=poll * 1.5), NOW + poll * 1.5 * H)
            costs.append(counts)
    small, large = costs
    assert small == large
    assert small["plan"] == 0
    assert small["snapshot"] <= 7  # five queries in one read transaction
    assert small["apply"] <= 16  # the listing and the plan, in one transaction


def test_the_snapshot_reads_back_what_apply_wrote(tmp_path: Path) -> None:
    jobs = fleet(50)
    with StateStore.open(tmp_path / "s.db") as store:
        statuses = {job.uuid: job.status for job in jobs}
        first = store.snapshot(statuses, NOW)
        entered = {j.uuid: NOW - 2 * H for j in jobs if j.status == "STAGING_INPUTS"}
        plan = plan_poll(jobs, RULES, first, NOW, SETTINGS, entered=entered)
        store.apply(plan.changes)
        again = store.snapshot(statuses, NOW)
        assert again.status_entries == entered
        touched = {(d.job_uuid, d.rule): d for d in plan.changes.decisions}
        assert {k: again.decisions[k] for k in touched} == touched
        assert again.breaker_open is (plan.changes.breaker_open is True)


def test_batched_writes_leave_the_rows_the_one_row_methods_leave(tmp_path: Path) -> None:
    with (
        StateStore.open(tmp_path / "batch.db") as batch,
        StateStore.open(tmp_path / "rows.db") as rows,
    ):
        for store in (batch, rows):
            store.observe_jobs({"a": "RUNNING", "b": "RUNNING", "c": "BLOCKED"}, NOW - H)
            store.record_match("a", "r", NOW - H)
            store.record_match("b", "r", NOW - H)
            store.record_warned("b", "r", NOW - H)
            store.record_acted("c", "r", NOW - H, "requested")
        batch.apply(
            StateChanges(
                at=NOW,
                seen=(("a", "RUNNING"), ("c", "BLOCKED"), ("d", "QUEUED")),
                status_entries=(("c", "BLOCKED", NOW - 3 * H),),
                matches=(("a", "r"), ("a", "s"), ("c", "r")),
                warned=(("a", "r"), ("b", "r"), ("b", "t")),
                cleared=(("b", "r"), ("c", "r")),
                acted=(("a", "s", "exempt"), ("d", "r", "dry_run")),
                dry_warnings=(("a", "r", "job_warned:dry_run:x"),),
                breaker_open=True,
            )
        )
        rows.observe_jobs({"a": "RUNNING", "c": "BLOCKED", "d": "QUEUED"}, NOW)
        rows.record_status_entry("c", "BLOCKED", NOW - 3 * H)
        for uuid, rule in (("a", "r"), ("a", "s"), ("c", "r")):
            rows.record_match(uuid, rule, NOW)
        for uuid, rule in (("a", "r"), ("b", "r"), ("b", "t")):
            rows.record_warned(uuid, rule, NOW)
        for uuid, rule in (("b", "r"), ("c", "r")):
            rows.record_cleared(uuid, rule, NOW)
        rows.record_acted("a", "s", NOW, "exempt")
        rows.record_acted("d", "r", NOW, "dry_run")
        rows.claim_notification("a", "r", "job_warned:dry_run:x", NOW)
        rows.set_meta("circuit_open", "1")
        for uuid in "abcd":
            assert batch.decisions_for(uuid) == rows.decisions_for(uuid), uuid
        assert batch.status_entry("c", "BLOCKED") == rows.status_entry("c", "BLOCKED")
        assert batch.get_meta("circuit_open") == "1"
        assert not batch.claim_notification("a", "r", "job_warned:dry_run:x", NOW)
        seen = {"a": "RUNNING", "b": "RUNNING", "c": "BLOCKED", "d": "RUNNING"}
        assert batch.snapshot(seen, NOW) == rows.snapshot(seen, NOW)


def test_a_clock_of_an_earlier_visit_is_not_read_and_is_dropped_with_the_plan(
    tmp_path: Path,
) -> None:
    with StateStore.open(tmp_path / "v.db") as store:
        store.apply(StateChanges(at=NOW - 3 * H, seen=(("a", "BLOCKED"),)))
        store.record_status_entry("a", "BLOCKED", NOW - 3 * H)
        assert store.snapshot({"a": "BLOCKED"}, NOW).status_entries == {"a": NOW - 3 * H}
        store.apply(StateChanges(at=NOW - 2 * H, seen=(("a", "RUNNING"),)))
        # Back in BLOCKED: the 3-hour-old clock belongs to the first visit.
        assert store.snapshot({"a": "BLOCKED"}, NOW).status_entries == {}
        store.apply(
            StateChanges(
                at=NOW, seen=(("a", "BLOCKED"),), status_entries=(("a", "BLOCKED", NOW - H),)
            )
        )
        assert store.snapshot({"a": "BLOCKED"}, NOW).status_entries == {"a": NOW - H}
        assert store.status_entry("a", "BLOCKED") == NOW - H


def test_an_empty_listing_is_a_listing_and_changes_without_one_are_not(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "e.db") as store:
        store.apply(StateChanges(at=NOW - 2 * H, seen=(("a", "RUNNING"), ("b", "RUNNING"))))
        store.apply(StateChanges(at=NOW - H, cleared=(("a", "r"),)))  # no listing: nobody left
        assert store.prune(NOW) == 0
        store.apply(StateChanges(at=NOW - H, seen=()))  # a whole poll that listed nothing
        assert store.prune(NOW) == 2  # both left an hour ago
