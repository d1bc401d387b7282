"""Cancel attempts in the state store, and what following reads from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from watchdog.act.attempts import CancelPlan
from watchdog.errors import StateError
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_attempts_are_kept_per_job_and_rule_with_their_first_answer(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "s.db") as store:
        first = store.begin_cancel("a", "r", T0)
        other = store.begin_cancel("b", "r", T0)
        one = store.begin_attempt(first, T0)
        store.answer_attempt(one.id, "lost", T0 + timedelta(seconds=1), "reset")
        store.answer_attempt(one.id, "accepted", T0 + timedelta(seconds=2))
        unsent = store.begin_attempt(first, T0 + timedelta(seconds=60))
        store.begin_attempt(other, T0)
        found = store.attempts_for("a", "r")
        assert [(a.answer, a.detail, a.written_at) for a in found] == [
            ("lost", "reset", T0),
            (None, None, T0 + timedelta(seconds=60)),
        ]
        # Unanswered: it may have reached Tapis only once it was marked as leaving.
        assert [a.maybe_received for a in found] == [True, False]
        store.mark_attempt_left(unsent.id, T0 + timedelta(seconds=61))
        store.mark_attempt_left(unsent.id, T0 + timedelta(seconds=99))
        found = store.attempts_for("a", "r")
        assert found[1].left_at == T0 + timedelta(seconds=61)
        assert [a.maybe_received for a in found] == [True, True]
        with pytest.raises(StateError, match="no cancel with id 999"):
            store.begin_attempt(999, T0)


def test_attempts_survive_reopening_and_are_pruned_with_their_job(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with StateStore.open(path) as store:
        store.observe_jobs({"a": "RUNNING"}, T0)
        store.observe_jobs({}, T0)  # the next poll no longer lists it: it ages out from here
        cancel = store.begin_cancel("a", "r", T0)
        store.begin_attempt(cancel, T0)
    with StateStore.open(path) as store:
        assert len(store.attempts_for("a", "r")) == 1
        store.prune(T0 + timedelta(days=1))  # a pending cancel keeps its job
        assert len(store.attempts_for("a", "r")) == 1
        store.finish_cancel(cancel, "cancelled", T0)
        store.prune(T0 + timedelta(days=1))
        assert store.attempts_for("a", "r") == []


def test_the_plan_counts_what_may_have_reached_tapis(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "s.db") as store:
        cancel = store.begin_cancel("a", "r", T0)
        refused = store.begin_attempt(cancel, T0)
        store.answer_attempt(refused.id, "never_sent", T0)
        plan = CancelPlan.of(store.attempts_for("a", "r"))
        assert (plan.first_sent_at, plan.requests, plan.resend_due(60)) == (None, 0, None)

        left = store.begin_attempt(cancel, T0 + timedelta(seconds=5))
        store.mark_attempt_left(left.id, T0 + timedelta(seconds=5))
        plan = CancelPlan.of(store.attempts_for("a", "r"))
        assert plan.first_sent_at == T0 + timedelta(seconds=5)
        assert plan.resend_due(60) == T0 + timedelta(seconds=65)

        again = store.begin_attempt(cancel, T0 + timedelta(seconds=70))
        store.answer_attempt(again.id, "accepted", T0 + timedelta(seconds=70))
        plan = CancelPlan.of(store.attempts_for("a", "r"))
        assert (plan.requests, plan.resend_left, plan.resend_due(60)) == (2, False, None)


def test_a_send_recorded_before_attempts_were_kept_counts_as_one() -> None:
    plan = CancelPlan.of([], legacy_sent_at=T0)
    assert (plan.first_sent_at, plan.requests) == (T0, 1)
    assert plan.resend_due(30) == T0 + timedelta(seconds=30)
