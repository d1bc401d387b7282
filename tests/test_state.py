from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdog.errors import StateError
from watchdog.state.reader import StateReader, record_last_poll
from watchdog.state.store import MIGRATIONS, CancelRecord, Decision, StateStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JOB = "0a1b2c3d-job-007"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "watchdog.db"


@pytest.fixture
def store(db: Path) -> Iterator[StateStore]:
    with StateStore.open(db) as s:
        yield s


# -- opening and migrations -----------------------------------------------------------------------


def test_open_creates_directory_and_schema_then_reopens(db: Path) -> None:
    assert not db.parent.exists()
    with StateStore.open(db) as s:
        assert s.schema_version == len(MIGRATIONS)
        s.set_meta("k", "v")
    with StateStore.open(str(db)) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.get_meta("k") == "v"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_empty_existing_file_is_migrated(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.touch()
    with StateStore.open(db) as s:
        assert s.schema_version == len(MIGRATIONS)


def test_newer_schema_is_refused(db: Path) -> None:
    StateStore.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer than this tapis-watchdog knows"):
        StateStore.open(db)


def test_non_database_file_is_a_state_error(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is a text file, not SQLite\n" * 200)
    with pytest.raises(StateError, match=str(db)):
        StateStore.open(db)


def test_path_under_a_regular_file_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot create its directory"):
        StateStore.open(blocker / "state.db")


def test_path_that_is_a_directory_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot open"):
        StateStore.open(tmp_path)


def test_use_after_close_is_a_state_error(db: Path) -> None:
    s = StateStore.open(db)
    s.close()
    with pytest.raises(StateError):
        s.get_meta("x")
    with pytest.raises(StateError):
        s.set_meta("x", "y")


def test_naive_datetimes_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.record_match(JOB, "r", datetime(2025, 1, 1))


def test_open_in_a_worker_thread_use_in_another(db: Path) -> None:
    box: list[StateStore] = []
    worker = threading.Thread(target=lambda: box.append(StateStore.open(db)))
    worker.start()
    worker.join()
    with box[0] as s:
        assert s.record_match(JOB, "r", at(0))


# -- status clocks ---------------------------------------------------------------------------------


def test_status_clock_keeps_first_time_and_survives_reopen(db: Path) -> None:
    with StateStore.open(db) as s:
        assert s.status_entry(JOB, "STAGING_INPUTS") is None
        assert s.record_status_entry(JOB, "STAGING_INPUTS", at(0)) == at(0)
        assert s.record_status_entry(JOB, "STAGING_INPUTS", at(30)) == at(0)
    with StateStore.open(db) as s:
        assert s.status_entry(JOB, "STAGING_INPUTS") == at(0)
        assert s.record_status_entry(JOB, "STAGING_INPUTS", at(60)) == at(0)
        assert s.status_entry("other-job", "STAGING_INPUTS") is None


def test_a_new_visit_to_a_status_gets_a_new_clock(store: StateStore) -> None:
    store.observe_jobs({JOB: "BLOCKED"}, at(0))
    store.record_status_entry(JOB, "BLOCKED", at(0))
    store.observe_jobs({JOB: "BLOCKED"}, at(5))
    assert store.status_entry(JOB, "BLOCKED") == at(0)
    store.observe_jobs({JOB: "RUNNING"}, at(10))
    assert store.status_entry(JOB, "BLOCKED") == at(0)
    store.observe_jobs({JOB: "BLOCKED"}, at(20))
    assert store.status_entry(JOB, "BLOCKED") is None
    assert store.record_status_entry(JOB, "BLOCKED", at(19)) == at(19)


def test_first_observation_keeps_a_clock_recorded_before(store: StateStore) -> None:
    store.record_status_entry(JOB, "ARCHIVING", at(0))
    store.observe_jobs({JOB: "ARCHIVING"}, at(1))
    assert store.status_entry(JOB, "ARCHIVING") == at(0)


def test_forget_status(store: StateStore) -> None:
    store.record_status_entry(JOB, "QUEUED", at(0))
    store.forget_status(JOB)
    assert store.status_entry(JOB, "QUEUED") is None


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1971, 1, 1)))
def test_times_round_trip_exactly(tmp_path_factory: pytest.TempPathFactory, when: datetime) -> None:
    db = tmp_path_factory.getbasetemp() / "roundtrip.db"
    with StateStore.open(db) as s:
        s.forget_status(JOB)
        assert s.record_status_entry(JOB, "RUNNING", when) == when
        assert s.status_entry(JOB, "RUNNING") == when


# -- decisions -------------------------------------------------------------------------------------


def test_decision_lifecycle_match_warn_clear_match_act(db: Path) -> None:
    with StateStore.open(db) as s:
        assert s.decision(JOB, "grace-rule") is None
        assert s.record_match(JOB, "grace-rule", at(0)) is True
        assert s.record_match(JOB, "grace-rule", at(1)) is False
        assert s.record_warned(JOB, "grace-rule", at(1)) is True
        assert s.record_warned(JOB, "grace-rule", at(2)) is False
        assert s.open_matches() == [
            Decision(JOB, "grace-rule", at(0), at(1), None, None, None),
        ]
        assert s.record_cleared(JOB, "grace-rule", at(5)) is True
        assert s.record_cleared(JOB, "grace-rule", at(6)) is False
        cleared = s.decision(JOB, "grace-rule")
        assert cleared is not None
        assert cleared.first_match_at is None
        assert cleared.cleared_at == at(5)
        assert s.open_matches() == []
    with StateStore.open(db) as s:
        assert s.record_match(JOB, "grace-rule", at(10)) is True
        again = s.decision(JOB, "grace-rule")
        assert again == Decision(JOB, "grace-rule", at(10), None, None, None, None)
        assert s.record_warned(JOB, "grace-rule", at(10)) is True
        s.record_acted(JOB, "grace-rule", at(20), "requested")
        s.record_acted(JOB, "grace-rule", at(21), "cancelled")
        acted = s.decision(JOB, "grace-rule")
        assert acted is not None
        assert (acted.acted_at, acted.outcome, acted.first_match_at) == (
            at(20),
            "cancelled",
            at(10),
        )
        assert s.open_matches() == []
        assert s.record_match(JOB, "grace-rule", at(30)) is False
        assert s.record_cleared(JOB, "grace-rule", at(31)) is False


def test_decisions_for_and_open_matches_order(store: StateStore) -> None:
    store.record_match(JOB, "b-rule", at(2))
    store.record_match(JOB, "a-rule", at(3))
    store.record_match("job-2", "a-rule", at(1))
    store.record_acted("job-3", "a-rule", at(0), "cancelled")
    assert [d.rule for d in store.decisions_for(JOB)] == ["a-rule", "b-rule"]
    assert [(d.job_uuid, d.rule) for d in store.open_matches()] == [
        ("job-2", "a-rule"),
        (JOB, "b-rule"),
        (JOB, "a-rule"),
    ]


def test_warned_without_prior_match_starts_the_match(store: StateStore) -> None:
    assert store.record_warned(JOB, "warn-rule", at(4)) is True
    d = store.decision(JOB, "warn-rule")
    assert d is not None
    assert (d.first_match_at, d.warned_at) == (at(4), at(4))


# -- cancels ---------------------------------------------------------------------------------------


def test_cancel_lifecycle(db: Path) -> None:
    with StateStore.open(db) as s:
        cid = s.begin_cancel(JOB, "r", at(0))
        [pending] = s.pending_cancels()
        assert pending == CancelRecord(
            id=cid,
            job_uuid=JOB,
            rule="r",
            dry_run=False,
            outcome="pending",
            begun_at=at(0),
            sent_at=None,
            finished_at=None,
            final_status=None,
            latency_s=None,
            detail=None,
        )
        assert pending.pending
        s.mark_cancel_sent(cid, at(0.5))
        s.mark_cancel_sent(cid, at(2))
    with StateStore.open(db) as s:
        [pending] = s.pending_cancels()
        assert pending.sent_at == at(0.5)
        s.finish_cancel(
            cid, "cancelled", at(3), final_status="CANCELLED", latency_s=150.0, detail="ok"
        )
        assert s.pending_cancels() == []
        done = s.cancel_for(JOB, "r")
        assert done is not None
        assert not done.pending
        assert (done.outcome, done.final_status, done.latency_s, done.detail) == (
            "cancelled",
            "CANCELLED",
            150.0,
            "ok",
        )
        second = s.begin_cancel(JOB, "r", at(10))
        latest = s.cancel_for(JOB, "r")
        assert latest is not None
        assert latest.id == second
        assert s.cancel_for(JOB, "other") is None


def test_unknown_cancel_id_is_a_state_error(store: StateStore) -> None:
    with pytest.raises(StateError, match="no cancel with id 99"):
        store.mark_cancel_sent(99, at(0))
    with pytest.raises(StateError, match="no cancel with id 99"):
        store.finish_cancel(99, "failed", at(0))


def test_cancel_intent_survives_kill_9(db: Path) -> None:
    child = textwrap.dedent(
        f"""
        import os, signal
        from datetime import datetime, timezone
        from watchdog.state.store import StateStore
        s = StateStore.open({str(db)!r})
        cid = s.begin_cancel({JOB!r}, "frontera-12h", datetime(2025, 3, 1, tzinfo=timezone.utc))
        sent = s.begin_cancel("job-sent", "frontera-12h", datetime(2025, 3, 1, tzinfo=timezone.utc))
        s.mark_cancel_sent(sent, datetime(2025, 3, 1, 0, 1, tzinfo=timezone.utc))
        s.append_event({{"event": "job_cancel_requested", "job_uuid": "job-sent",
                        "timestamp": "2025-03-01T00:01:00Z"}})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], check=False, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with StateStore.open(db) as s:
        pending = s.pending_cancels()
        assert [(c.job_uuid, c.outcome, c.sent_at is None) for c in pending] == [
            (JOB, "pending", True),
            ("job-sent", "pending", False),
        ]
        events = s.events_since(datetime(2025, 1, 1, tzinfo=UTC))
        assert [e["event"] for e in events] == ["job_cancel_requested"]


def test_breaker_window_counts_real_sent_cancels(db: Path) -> None:
    with StateStore.open(db) as s:
        for minute in (0, 10, 50):
            cid = s.begin_cancel(f"job-{minute}", "r", at(minute))
            s.mark_cancel_sent(cid, at(minute))
        dry = s.begin_cancel("job-dry", "r", at(20), dry_run=True)
        s.mark_cancel_sent(dry, at(20))
        refused = s.begin_cancel("job-terminal", "r", at(30))
        s.finish_cancel(refused, "already_terminal", at(30))
        s.begin_cancel("job-in-doubt", "r", at(40))
        finished = s.begin_cancel("job-done", "r", at(45))
        s.mark_cancel_sent(finished, at(45))
        s.finish_cancel(finished, "cancelled", at(46), final_status="CANCELLED")
    with StateStore.open(db) as s:
        # sent at 0, 10, 45, 50 and the in-doubt intent at 40; never the dry run or the refusal.
        assert s.cancels_sent_since(at(0)) == 5
        assert s.cancels_sent_since(at(10)) == 4
        assert s.cancels_sent_since(at(41)) == 2
        assert s.cancels_sent_since(at(51)) == 0


# -- meta, notifications, audit --------------------------------------------------------------------


def test_meta_set_replace_delete(store: StateStore) -> None:
    assert store.get_meta("circuit") is None
    store.set_meta("circuit", "open")
    store.set_meta("circuit", "closed")
    assert store.get_meta("circuit") == "closed"
    store.set_meta("circuit", None)
    assert store.get_meta("circuit") is None


def test_claim_notification_once_across_reopen(db: Path) -> None:
    with StateStore.open(db) as s:
        assert s.claim_notification(JOB, "r", "job_cancelled", at(0)) is True
        assert s.claim_notification(JOB, "r", "job_cancelled", at(1)) is False
        assert s.claim_notification(JOB, "r", "job_warned", at(1)) is True
        assert s.claim_notification(None, None, "circuit_opened") is True
        assert s.claim_notification(None, None, "circuit_opened") is False
    with StateStore.open(db) as s:
        assert s.claim_notification(JOB, "r", "job_cancelled", at(2)) is False
        assert s.claim_notification(JOB, "other", "job_cancelled", at(2)) is True


def test_audit_trail_since_limit_and_job(store: StateStore) -> None:
    store.append_event({"event": "poll_completed", "timestamp": "2025-03-01T12:00:00Z"})
    store.append_event(
        {
            "event": "job_cancelled",
            "timestamp": at(2),
            "job_uuid": JOB,
            "rule": "r",
            "latency_s": 1.5,
            "nested": {"when": at(2), "tags": ("a", "b")},
        }
    )
    store.append_event({"event": "watchdog_stopped", "timestamp": "2025-03-01T12:05:00+00:00"})
    store.append_event({"event": "no_time_given"})
    everything = store.events_since(T0)
    assert [e["event"] for e in everything] == [
        "poll_completed",
        "job_cancelled",
        "watchdog_stopped",
        "no_time_given",
    ]
    assert everything[1]["nested"] == {"when": "2025-03-01T12:02:00+00:00", "tags": ["a", "b"]}
    assert [e["event"] for e in store.events_since(at(1))][:2] == [
        "job_cancelled",
        "watchdog_stopped",
    ]
    assert [e["event"] for e in store.events_since(T0, limit=1)] == ["poll_completed"]
    assert [e["event"] for e in store.events_since(T0, job_uuid=JOB)] == ["job_cancelled"]


def test_many_events_are_cheap_enough_to_append(store: StateStore) -> None:
    for i in range(2000):
        store.append_event({"event": "rule_matched", "job_uuid": f"job-{i}", "rule": "r"})
    assert len(store.events_since(T0 - timedelta(days=1))) == 2000


# -- pruning ---------------------------------------------------------------------------------------


def test_prune_keeps_recent_and_pending_jobs(db: Path) -> None:
    with StateStore.open(db) as s:
        s.record_status_entry("old-job", "BLOCKED", at(0))
        s.record_match("old-job", "r", at(0))
        s.claim_notification("old-job", "r", "job_warned", at(0))
        done = s.begin_cancel("old-job", "r", at(0))
        s.finish_cancel(done, "cancelled", at(1))
        s.mark_terminal("old-job", at(1))
        s.append_event({"event": "job_cancelled", "timestamp": at(1), "job_uuid": "old-job"})

        s.begin_cancel("stuck-job", "r", at(0))

        s.record_match("seen-job", "r", at(0))
        s.observe_jobs({"seen-job": "RUNNING"}, at(100))
        s.append_event({"event": "poll_completed", "timestamp": at(100)})

        # old-job: clock, decision, notification, cancel, jobs row; one old event.
        assert s.prune(at(50)) == 6
        assert s.prune(at(50)) == 0
    with StateStore.open(db) as s:
        assert s.status_entry("old-job", "BLOCKED") is None
        assert s.decision("old-job", "r") is None
        assert s.cancel_for("old-job", "r") is None
        assert s.claim_notification("old-job", "r", "job_warned", at(2)) is True
        assert [c.job_uuid for c in s.pending_cancels()] == ["stuck-job"]
        assert s.decision("seen-job", "r") is not None
        assert [e["event"] for e in s.events_since(T0)] == ["poll_completed"]


def test_sqlite_is_real_and_other_processes_see_commits(db: Path) -> None:
    with StateStore.open(db) as s:
        s.record_match(JOB, "r", at(0))
        reader = sqlite3.connect(db)
        try:
            assert reader.execute("SELECT count(*) FROM decisions").fetchone()[0] == 1
        finally:
            reader.close()
    assert os.path.getsize(db) > 0  # noqa: PTH202


def test_a_poll_where_nothing_changed_writes_no_job_rows(db: Path) -> None:
    with StateStore.open(db) as s:
        s.observe_jobs({"a": "RUNNING", "b": "QUEUED"}, at(0))
        changes = s._conn.total_changes
        s.observe_jobs({"a": "RUNNING", "b": "QUEUED"}, at(1))
        assert s._conn.total_changes == changes
        s.observe_jobs({"a": "RUNNING", "b": "RUNNING"}, at(2))
        assert s._conn.total_changes == changes + 1


def test_a_listed_job_is_kept_and_ages_out_from_the_poll_that_no_longer_lists_it(
    db: Path,
) -> None:
    with StateStore.open(db) as s:
        s.record_match("long-job", "r", at(0))
        s.record_match("ended-job", "r", at(0))
        s.observe_jobs({"long-job": "RUNNING", "ended-job": "RUNNING"}, at(0))
        assert s.prune(at(50)) == 0  # both still listed, however long ago
        s.observe_jobs({"long-job": "RUNNING"}, at(60))  # ended-job left the listing at 60
        assert s.prune(at(59)) == 0
        assert s.prune(at(61)) == 2  # ended-job's decision and row
        assert s.decision("long-job", "r") is not None
        assert s.decision("ended-job", "r") is None


def test_the_last_poll_is_rewritten_only_when_its_counts_change(db: Path) -> None:
    with StateStore.open(db) as s:
        record_last_poll(s, at(0), {"RUNNING": 2})
        s.append_event({"event": "poll_completed", "timestamp": at(0)})
        changes = s._conn.total_changes
        record_last_poll(s, at(1), {"RUNNING": 2})
        assert s._conn.total_changes == changes
        s.append_event({"event": "poll_completed", "timestamp": at(1)})
    with StateReader.open(db) as reader:
        last = reader.last_poll()
        assert last is not None
        assert (last.at, dict(last.by_status)) == (at(1), {"RUNNING": 2})
    with StateStore.open(db) as s:
        record_last_poll(s, at(2), {"RUNNING": 1, "QUEUED": 1})
    with StateReader.open(db) as reader:
        last = reader.last_poll()
        assert last is not None
        assert (last.at, dict(last.by_status)) == (at(2), {"QUEUED": 1, "RUNNING": 1})
