"""The lease of the one active instance and its fencing token, on a real SQLite file shared by
two connections (two instances) and by real processes killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from watchdog.errors import LeaseLostError, StateError
from watchdog.state.lease import Holder, this_process
from watchdog.state.snapshot import StateChanges
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JOB = "0a1b2c3d-job-007"
LONG = timedelta(hours=1)
EXPIRED = timedelta(0)  # a lease that has expired by the next look


def holder(name: str, pid: int | None = None) -> Holder:
    me = this_process()
    return Holder(id=f"{me.host}:{name}", host=me.host, boot=me.boot, pid=pid or os.getpid())


A, B = holder("a"), holder("b")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "watchdog.db"


@pytest.fixture
def two(db: Path) -> Iterator[tuple[StateStore, StateStore]]:
    with StateStore.open(db) as first, StateStore.open(db) as second:
        yield first, second


def test_first_instance_takes_the_lease_and_renews_it_at_the_same_token(db: Path) -> None:
    with StateStore.open(db) as store:
        assert store.lease_holder() is None
        first = store.hold_lease(A, LONG)
        again = store.hold_lease(A, LONG)
        assert (first.active, first.token, first.took_over_from) == (True, 1, "")
        assert (again.active, again.token, again.took_over_from) == (True, 1, None)
        assert store.fence is not None
        assert store.fence.token == 1
        held = store.lease_holder()
        assert held is not None
        assert held[:2] == (A.id, 1)


def test_second_instance_is_standby_while_the_lease_runs(
    two: tuple[StateStore, StateStore],
) -> None:
    a, b = two
    a.hold_lease(A, LONG)
    seen = b.hold_lease(B, LONG)
    assert (seen.active, seen.holder, seen.token) == (False, A.id, 1)
    assert seen.expires_in_s > 0
    assert b.fence is None


def test_takeover_after_expiry_raises_the_token_and_refuses_the_deposed_writes(
    two: tuple[StateStore, StateStore],
) -> None:
    a, b = two
    a.hold_lease(A, EXPIRED)
    a.record_match(JOB, "r", T0)
    taken = b.hold_lease(B, LONG)
    assert (taken.active, taken.token, taken.took_over_from) == (True, 2, A.id)
    # The deposed instance still believes it is active: every write it tries is refused whole.
    with pytest.raises(LeaseLostError) as caught:
        a.record_acted(JOB, "r", T0, "requested")
    assert (caught.value.holder, caught.value.token) == (A.id, 1)
    with pytest.raises(LeaseLostError):
        a.begin_cancel(JOB, "r", T0)
    with pytest.raises(LeaseLostError):
        a.claim_notification(JOB, "r", "job_warned", T0)
    with pytest.raises(LeaseLostError):
        a.apply(StateChanges(at=T0, seen=((JOB, "RUNNING"),), matches=((JOB, "q"),)))
    assert isinstance(caught.value, StateError)
    decision = b.decision(JOB, "r")
    assert decision is not None
    assert decision.acted_at is None
    assert b.pending_cancels() == []
    # The new active writes; the trail still takes the deposed instance's own events.
    assert b.claim_notification(JOB, "r", "job_warned", T0)
    a.append_event({"timestamp": T0, "event": "lease_lost", "level": "warning"})
    assert [e["event"] for e in b.events_since(T0)] == ["lease_lost"]
    # Its next look at the lease tells it so, and clears its fence.
    lost = a.hold_lease(A, LONG)
    assert (lost.active, lost.holder, lost.token) == (False, B.id, 2)
    assert a.fence is None


def test_release_lets_the_standby_take_over_at_once(two: tuple[StateStore, StateStore]) -> None:
    a, b = two
    a.hold_lease(A, LONG)
    a.release_lease(A)
    assert a.fence is None
    taken = b.hold_lease(B, LONG)
    assert (taken.active, taken.token) == (True, 2)
    a.release_lease(A)  # no longer its lease: nothing happens
    assert b.hold_lease(B, LONG).active


def test_only_one_of_two_racing_takeovers_wins(db: Path) -> None:
    with StateStore.open(db) as a, StateStore.open(db) as b, StateStore.open(db) as c:
        a.hold_lease(A, EXPIRED)
        results = [b.hold_lease(B, LONG), c.hold_lease(holder("c"), LONG)]
        assert [r.active for r in results] == [True, False]
        assert results[1].holder == B.id


def test_a_store_without_a_lease_writes_unfenced(db: Path) -> None:
    """The commands (silence, cancel, history) and a dry run never take part."""
    with StateStore.open(db) as a, StateStore.open(db) as tool:
        a.hold_lease(A, LONG)
        assert tool.record_match(JOB, "r", T0)
        assert a.decision(JOB, "r") is not None


def _child(db: Path, ttl_s: float, then: str) -> str:
    return textwrap.dedent(
        f"""
        import os, signal, sys, time
        from datetime import timedelta
        from watchdog.state.lease import this_process
        from watchdog.state.store import StateStore
        store = StateStore.open({str(db)!r})
        state = store.hold_lease(this_process(), timedelta(seconds={ttl_s}))
        print(state.active, state.token, os.getpid(), flush=True)
        {then}
        """
    )


def test_a_killed_holder_on_this_host_is_replaced_without_waiting_for_expiry(db: Path) -> None:
    kill = "os.kill(os.getpid(), signal.SIGKILL)"
    proc = subprocess.run(
        [sys.executable, "-c", _child(db, 3600, kill)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL
    active, token, pid = proc.stdout.split()
    assert (active, token) == ("True", "1")
    with StateStore.open(db) as store:
        taken = store.hold_lease(B, LONG)
    assert (taken.active, taken.token) == (True, 2)
    assert taken.took_over_from is not None
    assert taken.took_over_from.split(":")[1] == pid


def test_a_live_holder_in_another_process_keeps_the_lease(db: Path) -> None:
    wait = "sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", _child(db, 3600, wait)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["True", "1", str(proc.pid)]
        with StateStore.open(db) as store:
            seen = store.hold_lease(B, LONG)
            assert not seen.active
            assert seen.holder.split(":")[1] == str(proc.pid)
            assert proc.stdin is not None
            proc.stdin.close()
            assert proc.wait(timeout=30) == 0
            # Gone without releasing it: not alive on this host any more, taken at once.
            assert store.hold_lease(B, LONG).active


def test_a_holder_of_another_host_is_waited_for_until_expiry(db: Path) -> None:
    other = Holder(id="elsewhere:1:x", host="elsewhere", boot=this_process().boot, pid=1 << 30)
    with StateStore.open(db) as a, StateStore.open(db) as b:
        a.hold_lease(other, LONG)
        assert not b.hold_lease(B, LONG).active
