"""A success status around no usable answer is a failed call: logged, retried, never believed.

Against the simulator's `envelope` fault (the request is served, the answer is `200 {}`), each
operation logs a `tapis_error` per try; reads retry and then fail as unavailable, a cancel is not
retried (Tapis may have acted on it) and fails as an answer that may have been received.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from test_tapis import FAST, PASSWORD, Calls, Settings

from watchdog.errors import TapisUnavailableError
from watchdog.sim import Simulator
from watchdog.tapis import envelopes

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from watchdog.tapis.client import TapisClient

pytestmark = pytest.mark.anyio


@pytest.fixture
def sim_settings() -> Iterator[tuple[Simulator, Settings, str]]:
    sim = Simulator({"users": {"alice": PASSWORD}, "jobs": [{"status": "RUNNING"}]})
    with sim.serve() as server:
        yield sim, Settings(str(server.base_url), tenant_id=sim.tenant_id), sim.uuids()[0]


OPERATIONS: dict[str, tuple[str, Callable[[TapisClient, str], Awaitable[Any]]]] = {
    "search": (
        "search_jobs",
        lambda c, _u: c.search_jobs(conditions={}, select=["uuid"], limit=10),
    ),
    "status": ("get_status", lambda c, u: c.get_status(u)),
    "get": ("get_job", lambda c, u: c.get_job(u)),
    "history": ("get_history", lambda c, u: c.get_history(u)),
    "cancel": ("cancel_job", lambda c, u: c.cancel_job(u)),
}


@pytest.mark.parametrize("endpoint", list(OPERATIONS))
async def test_an_empty_envelope_is_a_logged_failure(
    sim_settings: tuple[Simulator, Settings, str], endpoint: str
) -> None:
    sim, settings, uuid = sim_settings
    operation, call = OPERATIONS[endpoint]
    calls = Calls()
    sim.set_fault(kind="envelope", endpoint=endpoint)
    async with calls.client(settings, retry=FAST) as client:
        await client.login()
        with pytest.raises(TapisUnavailableError) as caught:
            await call(client, uuid)
    assert caught.value.maybe_received
    assert caught.value.http_status == 200
    tries = 1 if endpoint == "cancel" else FAST.attempts
    assert [(op, status) for op, status, _, _ in calls.errors] == [(operation, 200)] * tries
    assert calls.errors[-1][3] is None  # gave up
    assert "result" in calls.errors[-1][2]
    if endpoint == "cancel":
        assert sim.cancels_received(uuid) == 1  # served: Tapis may have acted on it


async def test_the_answer_after_a_bad_envelope_is_used(
    sim_settings: tuple[Simulator, Settings, str],
) -> None:
    sim, settings, uuid = sim_settings
    calls = Calls()
    sim.set_fault(kind="envelope", endpoint="status", count=1)
    async with calls.client(settings, retry=FAST) as client:
        await client.login()
        assert await client.get_status(uuid) == "RUNNING"
    assert [(op, status) for op, status, _, _ in calls.errors] == [("get_status", 200)]


@pytest.mark.parametrize(
    ("check", "value", "problem"),
    [
        (envelopes.search, {"status": "success", "result": []}, None),
        (envelopes.search, {"result": None}, "not a list of jobs"),
        (envelopes.search, [], "not a Tapis envelope"),
        (envelopes.status, {"result": {"status": "RUNNING"}}, None),
        (envelopes.status, {"result": {"condition": None}}, "no status"),
        (envelopes.status, {"status": "error", "result": {"status": "RUNNING"}}, "not 'success'"),
        (envelopes.cancel, {"status": "success", "result": {"message": "accepted"}}, None),
        (envelopes.cancel, {"status": "success", "message": "ok"}, "has no result"),
        (envelopes.cancel, {"status": "success", "result": None}, "not a cancel acknowledgement"),
        (envelopes.event, {"status": "success", "result": None}, None),
        (envelopes.job, {"result": "x"}, "not a job record"),
        (envelopes.history, {"result": [{}]}, None),
    ],
)
def test_what_each_operation_accepts(
    check: envelopes.Check, value: Any, problem: str | None
) -> None:
    found = check(value)
    assert (found is None) == (problem is None), found
    if problem is not None:
        assert found is not None
        assert problem in found


async def test_a_cancel_whose_leaving_cannot_be_recorded_is_not_sent(
    sim_settings: tuple[Simulator, Settings, str],
) -> None:
    sim, settings, uuid = sim_settings
    marks: list[str] = []

    def cannot_record() -> None:
        marks.append("tried")
        raise OSError("disk full")

    async with Calls().client(settings, retry=FAST) as client:
        await client.login()
        with pytest.raises(TapisUnavailableError) as caught:
            await client.cancel_job(uuid, before_send=cannot_record)
        await client.cancel_job(uuid, before_send=lambda: marks.append("left"))
    assert not caught.value.maybe_received
    assert marks == ["tried"] * FAST.attempts + ["left"]
    assert sim.cancels_received(uuid) == 1
