"""End to end: cancel attempts kept in the state store, so crashes neither lose nor repeat them.

Each test leaves the state a killed daemon would leave (a cancel intent and its attempts, written
before each send), sometimes with the request really delivered to the simulator first, then runs
`run --once` and counts the cancel requests the simulator received.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from test_e2e_harness import LONG_RUN, PASSWORD, TenantFactory, base_fleet, named, one

from watchdog.config.model import load_config
from watchdog.state.store import StateStore
from watchdog.tapis.client import TapisClient

if TYPE_CHECKING:
    from test_e2e_harness import Tenant

pytestmark = pytest.mark.anyio

RUNAWAY: dict[str, Any] = {"name": "j", "status": "RUNNING", "remoteStarted": "-13h"}


def crash_state(t: Tenant, *, ago: float, answers: list[str | None]) -> None:
    """A cancel of job `j` decided `ago` seconds ago, with one attempt per answer (None: the
    daemon died with the request out; "unsent": it died before the request left)."""
    uuid = t.uuid("j")
    begun = datetime.now(UTC) - timedelta(seconds=ago)
    with StateStore.open(t.state_path) as store:
        store.observe_jobs({uuid: "RUNNING"}, begun)
        store.record_match(uuid, "long-run", begun)
        cancel_id = store.begin_cancel(uuid, "long-run", begun)
        for answer in answers:
            attempt = store.begin_attempt(cancel_id, begun)
            if answer != "unsent":
                store.mark_attempt_left(attempt.id, begun)
            if answer not in {None, "unsent"}:
                store.answer_attempt(attempt.id, answer, begun)


async def deliver_cancel(t: Tenant) -> None:
    """Send the job a real cancel, as the daemon did before it was killed."""
    config = load_config(t.config_path, env={"E2E_TAPIS_PASSWORD": PASSWORD})
    async with TapisClient(config.tapis) as client:
        await client.login()
        await client.cancel_job(t.uuid("j"))


async def test_a_resend_due_after_a_restart_is_sent_once_on_schedule(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet([{**RUNAWAY, "cancel": "ignore_first"}]))
    t.write_config([LONG_RUN], safety={"verify_timeout": "20s", "resend_after": "2s"})
    uuid = t.uuid("j")
    await deliver_cancel(t)  # ignored by the job, as its first cancel always is
    crash_state(t, ago=0.5, answers=[None])
    with StateStore.open(t.state_path) as store:
        written = store.attempts_for(uuid, "long-run")[0].written_at
    t.sim.clear_requests()

    events = await t.run_once()

    assert t.posts("cancel") == [uuid]
    (resend,) = [r for r in t.sim.requests if r.endpoint == "cancel"]
    assert resend.time >= written + timedelta(seconds=2)
    assert one(events, "job_cancel_requested", job_uuid=uuid)["attempt"] == 2
    assert one(events, "job_cancelled", job_uuid=uuid)["final_status"] == "CANCELLED"
    assert t.sim.cancels_received(uuid) == 2


@pytest.mark.parametrize(
    "answers", [[None, None], ["accepted", "lost"], ["lost", None]], ids=["dead", "known", "mixed"]
)
async def test_a_decision_never_gets_a_third_cancel_request(
    tenant: TenantFactory, answers: list[str | None]
) -> None:
    t = tenant(base_fleet([{**RUNAWAY, "cancel": "ignore"}]))
    t.write_config([LONG_RUN], safety={"verify_timeout": "3s", "resend_after": "1s"})
    uuid = t.uuid("j")
    crash_state(t, ago=0.5, answers=answers)

    first = await t.run_once()
    second = await t.run_once()

    assert t.posts("cancel") == []
    one(first, "job_cancel_unconfirmed", job_uuid=uuid)
    assert not named(first + second, "job_cancel_requested")
    with StateStore.open(t.state_path) as store:
        assert len(store.attempts_for(uuid, "long-run")) == 2


@pytest.mark.parametrize("answer", ["never_sent", "unsent"], ids=["refused", "died-before"])
async def test_an_attempt_that_provably_never_left_is_sent_again(
    tenant: TenantFactory, answer: str
) -> None:
    t = tenant(base_fleet([RUNAWAY]))
    t.write_config([LONG_RUN])
    uuid = t.uuid("j")
    crash_state(t, ago=0.5, answers=[answer])

    events = await t.run_once()

    assert t.posts("cancel") == [uuid]
    job_requests = [r.endpoint for r in t.sim.requests if uuid in r.path]
    assert job_requests.index("status") < job_requests.index("cancel")
    assert len(named(events, "job_cancel_requested", job_uuid=uuid)) == 1
    assert one(events, "job_cancelled", job_uuid=uuid)["final_status"] == "CANCELLED"


async def test_a_restart_counts_the_one_resend_from_the_first_send(tenant: TenantFactory) -> None:
    # The first send was long enough ago that its re-send is overdue: it goes out at once, once.
    t = tenant(base_fleet([{**RUNAWAY, "cancel": "ignore_first"}]))
    t.write_config([LONG_RUN], safety={"verify_timeout": "20s", "resend_after": "1s"})
    uuid = t.uuid("j")
    await deliver_cancel(t)
    crash_state(t, ago=5, answers=["accepted"])
    t.sim.clear_requests()

    events = await t.run_once()

    assert t.posts("cancel") == [uuid]
    assert one(events, "job_cancel_requested", job_uuid=uuid)["attempt"] == 2
    done = one(events, "job_cancelled", job_uuid=uuid)
    assert done["latency_s"] >= 5


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "reset", "endpoint": "status", "count": 3},
        {"kind": "malformed", "endpoint": "status", "count": 3},
        {"kind": "error", "endpoint": "status", "status": 503, "count": 3},
        {"kind": "envelope", "endpoint": "status", "count": 3},
    ],
    ids=["reset", "malformed", "503", "empty-envelope"],
)
async def test_a_failed_status_check_sends_nothing_and_the_next_poll_cancels(
    tenant: TenantFactory, fault: dict[str, Any]
) -> None:
    t = tenant(base_fleet([RUNAWAY]))
    t.write_config([LONG_RUN])
    uuid = t.uuid("j")
    t.sim.set_fault(**fault)

    first = await t.run_once()

    assert t.posts("cancel") == []
    assert not named(first, "job_cancel_requested")
    assert not named(first, "job_cancel_failed")
    errors = named(first, "tapis_error", operation="get_status")
    assert len(errors) == 3
    assert errors[-1]["retry_in_s"] is None

    t.sim.clear_faults()
    second = await t.run_once()
    assert t.posts("cancel") == [uuid]
    one(second, "job_cancel_requested", job_uuid=uuid)
    assert one(second, "job_cancelled", job_uuid=uuid)["final_status"] == "CANCELLED"


@pytest.mark.parametrize(
    ("kind", "served"),
    [("reset", False), ("envelope", True), ("malformed", True)],
    ids=["reset", "empty-envelope", "malformed"],
)
async def test_a_cancel_without_a_usable_answer_is_followed_and_resent_on_schedule(
    tenant: TenantFactory, kind: str, served: bool
) -> None:
    # A served cancel is ignored by the job, so only the re-send can end it; a reset one never
    # reached the job, so the re-send is the first it gets.
    mode = "ignore_first" if served else "honour"
    t = tenant(base_fleet([{**RUNAWAY, "cancel": mode}]))
    t.write_config([LONG_RUN], safety={"verify_timeout": "20s", "resend_after": "1s"})
    uuid = t.uuid("j")
    t.sim.set_fault(kind=kind, endpoint="cancel", count=1)

    events = await t.run_once()

    # Followed as sent, then re-sent once on schedule, and the job ends on the re-send.
    assert t.posts("cancel") == [uuid, uuid]
    assert t.sim.cancels_received(uuid) == (2 if served else 1)
    requested = named(events, "job_cancel_requested", job_uuid=uuid)
    assert [e.get("attempt") for e in requested] == [None, 2]
    assert "the answer to the cancel was lost" in requested[0]["reason"]
    one(events, "tapis_error", operation="cancel_job")
    assert one(events, "job_cancelled", job_uuid=uuid)["final_status"] == "CANCELLED"
    with StateStore.open(t.state_path) as store:
        found = store.attempts_for(uuid, "long-run")
    assert [a.answer for a in found] == ["lost", "accepted"]
    assert all(a.written_at <= a.left_at for a in found if a.left_at is not None)
    assert all(a.left_at is not None for a in found)
