"""Ended jobs for budgets: the search, answered by the simulator as Tapis does; the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
from pydantic import SecretStr

from watchdog.poll.ended import search_ended, since_condition
from watchdog.sim import Simulator
from watchdog.state.snapshot import EndedJob
from watchdog.state.store import StateStore
from watchdog.tapis.client import RetryPolicy, TapisClient

if TYPE_CHECKING:
    from pathlib import Path

USER, PASSWORD = "alice", "alice-pw"
H = timedelta(hours=1)


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


def test_ended_gt_and_terminal_statuses_select_the_jobs_that_ended_since() -> None:
    jobs = [
        {"name": "recent", "status": "FINISHED", "remoteStarted": "-5h", "remoteEnded": "-2h",
         "ended": "-2h", "nodeCount": 3},
        {"name": "failed-early", "status": "FAILED", "ended": "-1h"},  # never ran: ends at ended
        {"name": "old", "status": "CANCELLED", "remoteStarted": "-30h", "remoteEnded": "-26h",
         "ended": "-26h"},
        {"name": "running", "status": "RUNNING", "remoteStarted": "-1h"},
        {"name": "bobs", "status": "FINISHED", "owner": "bob", "ended": "-1h"},
    ]  # fmt: skip
    sim = Simulator({"users": {USER: PASSWORD, "bob": "b"}, "jobs": jobs})
    by_name = {sim.job(u)["name"]: u for u in sim.uuids()}

    async def search() -> dict[str, EndedJob]:
        with sim.serve() as server:
            settings = Settings(str(server.base_url), sim.tenant_id)
            async with TapisClient(settings, retry=RetryPolicy(attempts=1)) as client:
                await client.login()
                since = datetime.now(UTC) - 24 * H
                found = await search_ended(client, since, list_type="MY_JOBS", page_size=1)
        return {job.name: job for job in found}

    found = anyio.run(search)
    assert set(found) == {"recent", "failed-early"}
    recent = found["recent"]
    record = sim.job(by_name["recent"])
    assert recent.uuid == by_name["recent"]
    assert recent.node_count == 3
    assert since_condition(recent.remote_ended) == record["remoteEnded"][:19] + "Z"
    assert found["failed-early"].remote_started is None


def ended(uuid: str, hours_ago: float) -> EndedJob:
    now = datetime.now(UTC)
    return EndedJob(
        uuid=uuid,
        status="FINISHED",
        remote_started=now - (hours_ago + 1) * H,
        remote_ended=now - hours_ago * H,
        node_count=4,
        app_id="opensees",
        tags=("sweep",),
        created=now - (hours_ago + 2) * H,
    )


def test_the_store_keeps_each_ended_job_once_with_the_span_covered(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    now = datetime.now(UTC)
    with StateStore.open(path) as store:
        assert store.ended_coverage() is None
        assert store.record_ended([ended("a", 2), ended("b", 30)], (now - 48 * H, now)) == 2
        assert store.record_ended([ended("a", 2)], (now - 48 * H, now)) == 0
    with StateStore.open(path) as store:  # a restart
        low, high = store.ended_coverage() or (None, None)
        assert (low, high) == (now - 48 * H, now)
        kept = store.ended_since(now - 24 * H)
        assert [job.uuid for job in kept] == ["a"]
        assert (kept[0].app_id, kept[0].tags, kept[0].node_count) == ("opensees", ("sweep",), 4)
        assert store.prune_ended(now - 24 * H) == 1
        assert [job.uuid for job in store.ended_since(now - 99 * H)] == ["a"]
