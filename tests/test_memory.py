"""Job records are freed when a poll is done with them, not left to the cyclic collector.

A record that ends up in a reference cycle lives until the next collection of the oldest
generation; at 100,000 jobs a poll's worth of such records is hundreds of megabytes. The Tapis
layer hands raw jobs answers past tapipy inside an exception, whose traceback is such a cycle.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from datetime import timedelta

import anyio
import pytest
from pydantic import SecretStr

from watchdog.jobs import ACTIVE_STATUSES, SUMMARY_FIELDS
from watchdog.poll.scan import poll_jobs
from watchdog.sim import Simulator
from watchdog.tapis.client import TapisClient
from watchdog.tapis.transport import RawResponseError

pytestmark = pytest.mark.anyio
USER, PASSWORD = "alice", "alice-pw"


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
    max_concurrency: int = 4


def _records_in(garbage: list[object]) -> int:
    return sum(1 for o in garbage if isinstance(o, dict) and "uuid" in o and "status" in o)


async def test_a_poll_leaves_no_cyclic_garbage_holding_job_records() -> None:
    jobs = [{"status": ACTIVE_STATUSES[i % len(ACTIVE_STATUSES)]} for i in range(120)]
    sim = Simulator({"users": {USER: PASSWORD}, "jobs": jobs})
    with sim.serve() as server:
        settings = Settings(str(server.base_url), sim.tenant_id)
        async with TapisClient(settings) as client:
            await client.login()

            async def poll() -> int:
                result = await poll_jobs(
                    client,
                    statuses=ACTIVE_STATUSES,
                    list_type="MY_JOBS",
                    page_size=50,
                    fields=SUMMARY_FIELDS,
                )
                return len(result.jobs)

            assert await poll() == 120  # warm: imports, connections, caches
            enabled = gc.isenabled()
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                with anyio.fail_after(30):
                    assert await poll() == 120
                gc.collect()
                garbage = list(gc.garbage)
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                if enabled:
                    gc.enable()
    assert not [o for o in garbage if isinstance(o, RawResponseError)]
    assert _records_in(garbage) == 0
