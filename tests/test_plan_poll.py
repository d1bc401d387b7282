"""The poll's plan as a table: jobs, rules, what the store knows, settings → what the daemon does.

`plan_poll` is pure: these tests need no SQLite, no simulator and no clock. Each case gives the
state snapshot as data, and checks the plan's events, cancels, look-ups and state changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.config.model import ExemptSettings
from watchdog.config.rule_schema import RuleConfig
from watchdog.jobs import Job
from watchdog.rules.evaluate import CompiledRule, compile_rule
from watchdog.rules.poll_plan import (
    CircuitEvent,
    JobEvent,
    PlanSettings,
    PollPlan,
    jobs_needing_history,
    plan_poll,
)
from watchdog.state.snapshot import (
    RECONSIDER,
    Decision,
    StateChanges,
    StateSnapshot,
    dry_warning_key,
)

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
H = timedelta(hours=1)

RULES: dict[str, dict[str, Any]] = {
    "long": {"name": "long", "when": {"runtime_over": "12h"}, "action": "cancel"},
    "long2": {"name": "long2", "when": {"runtime_over": "12h"}, "action": "cancel"},
    "tell": {"name": "tell", "when": {"runtime_over": "1h"}, "action": "warn"},
    "grace": {"name": "grace", "when": {"runtime_over": "1h"}, "grace": "1h", "action": "cancel"},
    "shadow": {
        "name": "shadow",
        "when": {"runtime_over": "12h"},
        "action": "cancel",
        "dry_run": True,
    },
    "shadow-grace": {
        "name": "shadow-grace",
        "when": {"runtime_over": "1h"},
        "grace": "1h",
        "action": "cancel",
        "dry_run": True,
    },
    "stuck": {
        "name": "stuck",
        "match": {"status": "STAGING_INPUTS"},
        "when": {"in_status_over": "1h"},
        "action": "cancel",
    },
}


def rules(*names: str) -> list[CompiledRule]:
    return [compile_rule(RuleConfig.model_validate(RULES[name])) for name in names]


def job(uuid: str, *, ran: float = 13, status: str = "RUNNING", **fields: Any) -> Job:
    """A job that started `ran` hours before NOW."""
    return Job(
        uuid=uuid,
        status=status,
        remote_started=NOW - ran * H if status == "RUNNING" else None,
        created=NOW - (ran + 1) * H,
        **fields,
    )


def decision(
    uuid: str,
    rule: str,
    *,
    matched: float | None = 1,
    warned: float | None = None,
    acted: float | None = None,
    outcome: str | None = None,
) -> Decision:
    """A decision whose match (warning, action) was `matched` (...) hours before NOW."""

    def ago(hours: float | None) -> datetime | None:
        return None if hours is None else NOW - hours * H

    return Decision(uuid, rule, ago(matched), ago(warned), ago(acted), None, outcome)


def snapshot(*decisions: Decision, **fields: Any) -> StateSnapshot:
    return StateSnapshot(decisions={(d.job_uuid, d.rule): d for d in decisions}, **fields)


def plan_settings(**fields: Any) -> PlanSettings:
    fields.setdefault("exempt", ExemptSettings())
    fields.setdefault("max_cancels_per_poll", 10)
    fields.setdefault("max_cancels_per_hour", 50)
    return PlanSettings(**fields)


def said(plan: PollPlan) -> list[tuple[str, ...]]:
    """The plan's events as (event, job, rule, why) and (circuit event, due, allowed)."""
    out: list[tuple[str, ...]] = []
    for event in plan.events:
        if isinstance(event, CircuitEvent):
            out.append((event.event, str(event.due), str(event.allowed)))
        else:
            out.append((event.event, event.job.uuid, event.rule, event.why or ""))
    return out


@dataclass
class Case:
    name: str
    jobs: list[Job]
    rules: list[str]
    state: StateSnapshot = field(default_factory=StateSnapshot)
    settings: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, ...]] = field(default_factory=list)
    cancels: list[tuple[str, str]] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)
    lookups: list[tuple[str, str]] = field(default_factory=list)


CASES = [
    Case(
        "a new match without grace is cancelled in the same poll",
        [job("a")],
        ["long"],
        events=[("rule_matched", "a", "long", "")],
        cancels=[("a", "long")],
        changes={"matches": (("a", "long"),)},
    ),
    Case(
        "a match already acted on is neither logged nor cancelled again",
        [job("a")],
        ["long"],
        snapshot(decision("a", "long", acted=1, outcome="requested")),
    ),
    Case(
        "a job whose cancel is being followed is not cancelled again",
        [job("a")],
        ["long"],
        snapshot(decision("a", "long")),
        settings={"following": frozenset({"a"})},
    ),
    Case(
        "a cancel Tapis could not take is due again",
        [job("a")],
        ["long"],
        snapshot(decision("a", "long", acted=1, outcome="unavailable")),
        cancels=[("a", "long")],
    ),
    Case(
        "a grace rule warns at its first match",
        [job("a", ran=2)],
        ["grace"],
        events=[("rule_matched", "a", "grace", ""), ("job_warned", "a", "grace", "")],
        changes={"matches": (("a", "grace"),), "warned": (("a", "grace"),)},
    ),
    Case(
        "within its grace a warned match does nothing",
        [job("a", ran=2)],
        ["grace"],
        snapshot(decision("a", "grace", matched=0.5, warned=0.5)),
    ),
    Case(
        "a grace counts from the warning, and the cancel is due after it",
        [job("a", ran=3)],
        ["grace"],
        snapshot(decision("a", "grace", matched=2, warned=1.5)),
        cancels=[("a", "grace")],
    ),
    Case(
        "a match never warned for real (it was a dry-run rule) warns now and waits a grace",
        [job("a", ran=3)],
        ["grace"],
        snapshot(decision("a", "grace", matched=2)),
        events=[("job_warned", "a", "grace", "")],
        changes={"warned": (("a", "grace"),)},
    ),
    Case(
        "a warned match that stops matching is cleared",
        [job("a", ran=0.5)],
        ["grace"],
        snapshot(decision("a", "grace", matched=0.2, warned=0.2)),
        events=[("job_cleared", "a", "grace", "")],
        changes={"cleared": (("a", "grace"),)},
    ),
    Case(
        "a match never warned is cleared silently",
        [job("a", ran=11)],
        ["long"],
        snapshot(decision("a", "long")),
        changes={"cleared": (("a", "long"),)},
    ),
    Case(
        "a warned match of a job that left the listing needs a look-up first",
        [job("b", ran=0.1)],
        ["grace"],
        snapshot(decision("a", "grace", matched=0.5, warned=0.5)),
        lookups=[("a", "grace")],
    ),
    Case(
        "an unwarned match of a job that left the listing is cleared without a look-up",
        [],
        ["long"],
        snapshot(decision("a", "long")),
        changes={"cleared": (("a", "long"),)},
    ),
    Case(
        "the first acting rule in file order wins; the others are only matched",
        [job("a")],
        ["tell", "shadow", "long", "long2"],
        events=[
            ("rule_matched", "a", "tell", ""),
            ("rule_matched", "a", "shadow", ""),
            ("rule_matched", "a", "long", ""),
            ("rule_matched", "a", "long2", ""),
            ("job_warned", "a", "tell", ""),
            ("job_cancel_skipped", "a", "shadow", "dry_run"),
        ],
        cancels=[("a", "long")],
    ),
    Case(
        "an exempt job is skipped once, and never warned",
        [job("a", tags=("keep",))],
        ["tell", "long"],
        settings={"exempt": ExemptSettings(tags=("keep",))},
        events=[
            ("rule_matched", "a", "tell", ""),
            ("rule_matched", "a", "long", ""),
            ("job_cancel_skipped", "a", "long", "exempt"),
        ],
        changes={"acted": (("a", "long", "exempt"),)},
    ),
    Case(
        "an exemption already logged is not logged again",
        [job("a", owner="bob")],
        ["long"],
        snapshot(decision("a", "long", acted=1, outcome="exempt")),
        settings={"exempt": ExemptSettings(owners=("bob",))},
    ),
    Case(
        "a per-rule dry-run grace rule warns once per match, through its claim",
        [job("a", ran=2), job("b", ran=2)],
        ["shadow-grace"],
        snapshot(
            decision("a", "shadow-grace", matched=0.5),
            decision("b", "shadow-grace", matched=0.5),
            dry_warnings=frozenset({("a", "shadow-grace", dry_warning_key(NOW - 0.5 * H))}),
        ),
        events=[("job_warned", "b", "shadow-grace", "")],
        changes={
            "dry_warnings": (("b", "shadow-grace", dry_warning_key(NOW - 0.5 * H)),),
        },
    ),
    Case(
        "a dry run names the cancel it would send, and counts it for its hour",
        [job("a")],
        ["long"],
        settings={"dry_run": True},
        events=[("rule_matched", "a", "long", ""), ("job_cancel_skipped", "a", "long", "dry_run")],
        changes={"dry_cancels": (("a", "long"),), "acted": (("a", "long", "dry_run"),)},
    ),
    Case(
        "a dry run names again what a real run had only logged",
        [job("a")],
        ["long"],
        snapshot(decision("a", "long", acted=1, outcome=RECONSIDER)),
        settings={"dry_run": True},
        events=[("job_cancel_skipped", "a", "long", "dry_run")],
    ),
    Case(
        "over max_cancels_per_poll the breaker opens and holds every cancel",
        [job("a"), job("b"), job("c")],
        ["long"],
        snapshot(decision("a", "long"), decision("b", "long"), decision("c", "long")),
        settings={"max_cancels_per_poll": 2},
        events=[
            ("circuit_opened", "3", "0"),
            ("job_cancel_skipped", "a", "long", "circuit_open"),
            ("job_cancel_skipped", "b", "long", "circuit_open"),
            ("job_cancel_skipped", "c", "long", "circuit_open"),
        ],
        changes={"breaker_open": True},
    ),
    Case(
        "in a dry run the breaker's hold is named on each cancel, the circuit is not opened",
        [job("a"), job("b"), job("c")],
        ["long"],
        snapshot(decision("a", "long"), decision("b", "long"), decision("c", "long")),
        settings={"max_cancels_per_poll": 2, "dry_run": True},
        events=[
            ("job_cancel_skipped", "a", "long", "circuit_open"),
            ("job_cancel_skipped", "b", "long", "circuit_open"),
            ("job_cancel_skipped", "c", "long", "circuit_open"),
        ],
        changes={"breaker_open": True, "dry_cancels": ()},
    ),
    Case(
        "the rolling hour lets through only what is left of it",
        [job("a"), job("b")],
        ["long"],
        snapshot(decision("a", "long"), decision("b", "long"), cancels_last_hour=49),
        events=[("circuit_opened", "2", "1"), ("job_cancel_skipped", "b", "long", "circuit_open")],
        cancels=[("a", "long")],
        changes={"breaker_open": True},
    ),
    Case(
        "an open breaker closes once the cancels due are within the limits",
        [job("a")],
        ["long"],
        snapshot(decision("a", "long", acted=1, outcome="circuit_open"), breaker_open=True),
        events=[("circuit_closed", "1", "1")],
        cancels=[("a", "long")],
        changes={"breaker_open": False},
    ),
    Case(
        "a status clock kept in the store is used",
        [job("a", status="STAGING_INPUTS")],
        ["stuck"],
        snapshot(status_entries={"a": NOW - 2 * H}),
        events=[("rule_matched", "a", "stuck", "")],
        cancels=[("a", "stuck")],
    ),
    Case(
        "no clock and no history: an in_status_over condition does not hold",
        [job("a", status="STAGING_INPUTS")],
        ["stuck"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_poll(case: Case) -> None:
    plan = plan_poll(case.jobs, rules(*case.rules), case.state, NOW, plan_settings(**case.settings))
    assert said(plan) == case.events
    assert [(c.job.uuid, c.rule) for c in plan.cancels] == case.cancels
    assert [(lk.decision.job_uuid, lk.decision.rule) for lk in plan.lookups] == case.lookups
    for name, expected in case.changes.items():
        assert getattr(plan.changes, name) == expected, name
    if "breaker_open" not in case.changes:
        assert plan.changes.breaker_open is None
    assert plan.changes.at == NOW


def test_warnings_go_into_tapis_only_for_real() -> None:
    for dry in (False, True):
        plan = plan_poll(
            [job("a", ran=2)], rules("grace"), StateSnapshot(), NOW, plan_settings(dry_run=dry)
        )
        (warned,) = [e for e in plan.events if isinstance(e, JobEvent) and e.event == "job_warned"]
        assert warned.note_tapis is not dry
        assert warned.dry_run is dry
        assert "cancel at 2026-11-28T04:00:00Z if still violating" in warned.reason


def test_dry_run_breaker_reason_and_figures() -> None:
    state = snapshot(*(decision(u, "long") for u in "abc"))
    plan = plan_poll(
        [job(u) for u in "abc"],
        rules("long"),
        state,
        NOW,
        plan_settings(max_cancels_per_poll=2, dry_run=True),
    )
    for event in plan.events:
        assert isinstance(event, JobEvent)
        assert event.dry_run is True
        assert event.reason.endswith(
            "the circuit breaker would hold it: "
            "3 cancels due this poll, over max_cancels_per_poll 2"
        )
        assert event.fields == {"due": 3, "allowed": 0}


def test_history_entries_are_used_and_recorded() -> None:
    stuck = job("a", status="STAGING_INPUTS")
    assert jobs_needing_history(
        [stuck, job("b")], rules("stuck", "long"), StateSnapshot(), NOW
    ) == [stuck]
    kept = StateSnapshot(status_entries={"a": NOW - 2 * H})
    assert jobs_needing_history([stuck], rules("stuck"), kept, NOW) == []
    plan = plan_poll(
        [stuck], rules("stuck"), StateSnapshot(), NOW, plan_settings(), entered={"a": NOW - 2 * H}
    )
    assert plan.changes.status_entries == (("a", "STAGING_INPUTS", NOW - 2 * H),)
    assert [(c.job.uuid, c.rule) for c in plan.cancels] == [("a", "stuck")]


def test_a_running_job_reads_its_clock_from_its_record_not_the_store() -> None:
    # A clock for RUNNING in the store (from an older version) must not override remoteStarted.
    state = StateSnapshot(status_entries={"a": NOW - 20 * H})
    plan = plan_poll([job("a", ran=1)], rules("long"), state, NOW, plan_settings())
    assert plan.cancels == ()


# -- replaying plans: what a plan writes, the next plan reads ------------------------------------


def advance(state: StateSnapshot, changes: StateChanges) -> StateSnapshot:
    """The snapshot after `changes`, as the in-memory store keeps it."""
    decisions = dict(state.decisions)
    decisions.update({(d.job_uuid, d.rule): d for d in changes.decisions})
    return replace(
        state,
        decisions=decisions,
        dry_warnings=state.dry_warnings | set(changes.dry_warnings),
        breaker_open=state.breaker_open if changes.breaker_open is None else changes.breaker_open,
    )


ONCE_PER_MATCH = {"rule_matched", "job_warned", "job_cancel_skipped", "job_cleared"}


@settings(max_examples=60, deadline=None)
@given(
    runtimes=st.lists(st.sampled_from([0.5, 2, 13]), min_size=1, max_size=6),
    names=st.lists(st.sampled_from(list(RULES)), min_size=1, max_size=4, unique=True),
    dry=st.booleans(),
    per_poll=st.integers(min_value=0, max_value=4),
)
def test_a_second_plan_on_the_first_ones_state_repeats_nothing(
    runtimes: list[float], names: list[str], dry: bool, per_poll: int
) -> None:
    jobs = [job(f"j{i}", ran=r) for i, r in enumerate(runtimes)]
    settings_ = plan_settings(dry_run=dry, max_cancels_per_poll=per_poll)
    first = plan_poll(jobs, rules(*names), StateSnapshot(), NOW, settings_)
    sent = {c.job.uuid for c in first.cancels}
    state = advance(StateSnapshot(), first.changes)
    # A sent cancel is being followed: the next poll leaves it to the follower.
    second = plan_poll(
        jobs, rules(*names), state, NOW, replace(settings_, following=frozenset(sent))
    )
    again = [e for e in second.events if isinstance(e, JobEvent) and e.event in ONCE_PER_MATCH]
    assert again == []
    assert second.cancels == ()
    assert second.changes.matches == second.changes.warned == second.changes.acted == ()
