"""A poll tolerates what cannot hurt: the same uuid twice counts once, a uuid-less record is
skipped with the cursor on the last good uuid; only a scan that stops advancing fails the poll.

The simulator here mangles its search answers after serving them, as a faulty proxy or a
server-side race could: a record repeated within a page or across pages, a record without its
uuid last on a full page.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import orjson
import pytest
from pydantic import SecretStr

from watchdog.errors import PollError
from watchdog.jobs import ACTIVE_STATUSES, SUMMARY_FIELDS
from watchdog.poll.scan import poll_jobs
from watchdog.sim import Simulator
from watchdog.sim.api import Reply
from watchdog.tapis.client import RetryPolicy, TapisClient

if TYPE_CHECKING:
    from collections.abc import Callable

    from watchdog.poll.scan import PollResult
    from watchdog.sim.simulator import Outcome, Request

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "alice-pw"
FAST = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.01)


class MangledSimulator(Simulator):
    """Rewrites the records of each search answer: `mangle(n, records)` for the n-th search."""

    def __init__(self, fleet: dict[str, Any], mangle: Callable[..., list[dict[str, Any]]]) -> None:
        super().__init__(fleet)
        self.mangle = mangle
        self.searches = 0

    def handle(self, request: Request) -> Outcome:
        outcome = super().handle(request)
        reply = outcome.reply
        if request.path != "/v3/jobs/search" or reply is None or reply.status != 200:
            return outcome
        self.searches += 1
        body = orjson.loads(reply.body)
        body["result"] = self.mangle(self.searches, list(body["result"]))
        return replace(outcome, reply=Reply(200, orjson.dumps(body)))


@dataclass(frozen=True)
class Settings:
    base_url: str
    tenant_id: str
    username: str | None = USER
    password: SecretStr | None = field(default_factory=lambda: SecretStr(PASSWORD))
    access_token: SecretStr | None = None
    client_id: str | None = None
    client_key: SecretStr | None = None
    timeout: timedelta = timedelta(seconds=10)
    max_concurrency: int = 2


async def poll(
    mangle: Callable[..., list[dict[str, Any]]], *, jobs: int = 12, page_size: int = 5
) -> tuple[PollResult, set[str], list[tuple[str | None, str]]]:
    sim = MangledSimulator(
        {"users": {USER: PASSWORD}, "jobs": [{"status": "RUNNING"} for _ in range(jobs)]}, mangle
    )
    malformed: list[tuple[str | None, str]] = []
    with sim.serve() as server:
        settings = Settings(str(server.base_url), sim.tenant_id)
        async with TapisClient(settings, retry=FAST) as client:
            await client.login()
            with anyio.fail_after(30):
                result = await poll_jobs(
                    client,
                    statuses=ACTIVE_STATUSES,
                    list_type="MY_JOBS",
                    page_size=page_size,
                    fields=SUMMARY_FIELDS,
                    on_malformed=lambda u, d: malformed.append((u, d)),
                )
    return result, set(sim.uuids()), malformed


def twice_in_a_page(_n: int, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [records[0], *records] if records else records


def last_of_the_previous_page_again() -> Callable[..., list[dict[str, Any]]]:
    previous: list[dict[str, Any]] = []

    def mangle(_n: int, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = [previous[-1], *records] if previous and records else records
        previous[:] = records
        return out

    return mangle


def uuid_less_last(_n: int, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(records) < 5:
        return records
    *kept, last = records
    return [*kept, {k: v for k, v in last.items() if k != "uuid"}]


@pytest.mark.parametrize(
    "mangle",
    [twice_in_a_page, last_of_the_previous_page_again(), uuid_less_last],
    ids=["twice-in-a-page", "again-on-the-next-page", "uuid-less-last"],
)
async def test_what_cannot_hurt_does_not_fail_the_poll(
    mangle: Callable[..., list[dict[str, Any]]],
) -> None:
    result, every_uuid, malformed = await poll(mangle)
    uuids = [job.uuid for job in result.jobs]
    assert len(uuids) == len(set(uuids))  # counted once
    assert set(uuids) == every_uuid  # nothing lost
    if mangle is uuid_less_last:
        assert malformed
        assert all(uuid is None for uuid, _ in malformed)


async def test_a_scan_that_stops_advancing_fails_the_poll() -> None:
    # A server ignoring the keyset condition answers the same full page forever.
    first: list[dict[str, Any]] = []

    def same_page(_n: int, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not first:
            first.extend(records)
        return list(first)

    with pytest.raises(PollError):
        await poll(same_page)
