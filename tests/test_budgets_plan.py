"""Budgets in the poll's plan: their cancels go through everything a rule's does. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from watchdog.config.budget_schema import BudgetConfig
from watchdog.config.model import ExemptSettings
from watchdog.config.rule_schema import RuleConfig
from watchdog.jobs import Job
from watchdog.rules.budgets import compile_budgets
from watchdog.rules.evaluate import compile_rule
from watchdog.rules.poll_plan import BudgetEvent, JobEvent, PlanSettings, PollPlan, plan_poll
from watchdog.state.schema import Silence
from watchdog.state.snapshot import StateSnapshot

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
H = timedelta(hours=1)
SWEEP: dict[str, Any] = {
    "name": "sweep",
    "match": {"app": "opensees*"},
    "window": "24h",
    "limit": {"node_hours": 100},
    "warn_at": "50%",
    "action": "cancel",
}


def budgets(**fields: Any) -> tuple[Any, ...]:
    return compile_budgets([BudgetConfig.model_validate({**SWEEP, **fields})])


def job(uuid: str, status: str = "QUEUED", *, ran: float = 0, **fields: Any) -> Job:
    fields.setdefault("app_id", "opensees-mp")
    fields.setdefault("node_count", 10)
    started = NOW - ran * H if status == "RUNNING" else None
    return Job(uuid=uuid, status=status, remote_started=started, created=NOW - 20 * H, **fields)


def settings(**fields: Any) -> PlanSettings:
    base: dict[str, Any] = {
        "exempt": ExemptSettings(),
        "max_cancels_per_poll": 10,
        "max_cancels_per_hour": 50,
        "budgets": budgets(),
    }
    return PlanSettings(**{**base, **fields})


def decide(jobs: list[Job], snapshot: StateSnapshot | None = None, **fields: Any) -> PollPlan:
    return plan_poll(jobs, [], snapshot or StateSnapshot(), NOW, settings(**fields))


def budget_events(plan: PollPlan) -> list[tuple[str, str]]:
    return [(e.event, e.level) for e in plan.events if isinstance(e, BudgetEvent)]


def skips(plan: PollPlan) -> dict[str, str | None]:
    return {
        e.job.uuid: e.why
        for e in plan.events
        if isinstance(e, JobEvent) and e.event == "job_cancel_skipped"
    }


FLEET = [
    job("run", "RUNNING", ran=12),  # 120 node hours: over 100
    job("queued-1"),
    job("queued-2"),
    job("other", app_id="namd"),
]


def test_over_budget_the_groups_queued_jobs_are_cancelled_under_its_name() -> None:
    plan = decide(FLEET)
    assert {(c.job.uuid, c.rule) for c in plan.cancels} == {
        ("queued-1", "sweep"),
        ("queued-2", "sweep"),
    }
    assert {c.reason for c in plan.cancels} == {"sweep: 120 of 100 node hours in the last 1d"}
    (event,) = (e for e in plan.events if isinstance(e, BudgetEvent))
    assert (event.event, event.budget, event.usage, event.limit, event.unit) == (
        "budget_exceeded",
        "sweep",
        120.0,
        100.0,
        "node_hours",
    )
    assert plan.changes.budget_levels == (("sweep", "over"),)


def test_a_known_level_logs_no_event_again_and_recovery_is_logged_once() -> None:
    over = StateSnapshot(budget_levels={"sweep": "over"})
    assert budget_events(decide(FLEET, over)) == []
    calm = [job("run", "RUNNING", ran=1), job("queued-1")]
    plan = decide(calm, over)
    assert budget_events(plan) == [("budget_recovered", "ok")]
    assert plan.cancels == ()
    assert budget_events(decide([job("run", "RUNNING", ran=6)])) == [("budget_warned", "warn")]


def test_exempt_and_silenced_jobs_are_spared_a_budget_cancel() -> None:
    silence = Silence(
        id="s1",
        created_at=NOW - H,
        expires_at=NOW + H,
        created_by="ops",
        reason="the last one",
        uuids=("queued-2",),
        rule="sweep",
    )
    plan = decide(
        [*FLEET, job("vip", tags=("keep",))],
        exempt=ExemptSettings(tags=("keep",)),
        silences=(silence,),
    )
    assert [c.job.uuid for c in plan.cancels] == ["queued-1"]
    assert skips(plan) == {"queued-2": "silenced", "vip": "exempt"}


def test_a_dry_run_names_every_would_be_cancel() -> None:
    plan = decide(FLEET, dry_run=True)
    assert plan.cancels == ()
    assert skips(plan) == {"queued-1": "dry_run", "queued-2": "dry_run"}
    assert all(e.dry_run for e in plan.events if isinstance(e, BudgetEvent))


def test_the_breaker_holds_budget_cancels_like_rule_cancels() -> None:
    plan = decide(FLEET, max_cancels_per_poll=1)
    assert plan.cancels == ()
    assert skips(plan) == {"queued-1": "circuit_open", "queued-2": "circuit_open"}


def test_a_grace_period_warns_first() -> None:
    plan = decide(FLEET, budgets=budgets(grace="30m"))
    assert plan.cancels == ()
    warned = {
        e.job.uuid for e in plan.events if isinstance(e, JobEvent) and e.event == "job_warned"
    }
    assert warned == {"queued-1", "queued-2"}


def test_one_cancel_per_job_the_first_rule_in_file_order_wins() -> None:
    rule = compile_rule(
        RuleConfig.model_validate(
            {
                "name": "queued",
                "match": {"status": "QUEUED"},
                "when": {"age_over": "1h"},
                "action": "cancel",
            }
        )
    )
    plan = plan_poll(FLEET, [rule], StateSnapshot(), NOW, settings())
    by_job = {c.job.uuid: c.rule for c in plan.cancels}
    assert by_job == {"queued-1": "queued", "queued-2": "queued", "other": "queued"}


def test_a_count_limit_cancels_the_newest_excess() -> None:
    lanes = budgets(window=None, limit={"active_jobs": 2}, warn_at=None)
    fleet = [
        Job(uuid=f"j{i}", status="QUEUED", app_id="opensees", created=NOW - (10 - i) * H)
        for i in range(5)
    ]
    plan = decide(fleet, budgets=lanes)
    assert [c.job.uuid for c in plan.cancels] == ["j4", "j3", "j2"]
    assert {c.reason for c in plan.cancels} == {"sweep: 5 of 2 active jobs"}
