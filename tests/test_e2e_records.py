"""End to end: records that cannot be true never cancel a job; each defect is logged once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from test_e2e_harness import LONG_RUN, PASSWORD, Event, base_fleet, named

from watchdog.service.daemon import build_daemon

if TYPE_CHECKING:
    from test_e2e_harness import Tenant, TenantFactory

pytestmark = pytest.mark.anyio


async def polls(t: Tenant, count: int) -> list[Event]:
    """`count` polls of one daemon (one process lifetime); every event they logged."""
    events: list[Event] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E2E_TAPIS_PASSWORD", PASSWORD)
        daemon, _ = build_daemon(t.config_path, listeners=(events.append,))
    try:
        await daemon.client.login()
        async with anyio.create_task_group() as followers:
            for _ in range(count):
                assert await daemon.poll_once(followers)
    finally:
        await daemon.client.aclose()
        daemon.store.close()
    return events


async def test_a_start_in_year_one_cancels_nothing_and_is_reported_once(
    tenant: TenantFactory,
) -> None:
    t = tenant(
        base_fleet(
            [
                {"name": "ancient", "status": "RUNNING", "remoteStarted": "-1h"},
                {"name": "runaway", "status": "RUNNING", "remoteStarted": "-13h"},
                {"name": "broken", "status": "RUNNING", "remoteStarted": "-13h"},
            ]
        )
    )
    t.write_config([LONG_RUN])
    ancient = t.uuid("ancient")
    t.sim.update_job(ancient, remoteStarted="0001-01-01T00:00:00.000000Z")
    broken = t.uuid("broken")
    t.sim.update_job(broken, tags="not-a-list")

    events = await polls(t, 4)

    assert t.posts("cancel") == [t.uuid("runaway")]
    defects = [e for e in named(events, "tapis_error") if ancient in e["error"]]
    assert len(defects) == 1
    assert "remoteStarted 0001-01-01T00:00:00.000000Z is before 2000" in defects[0]["error"]
    assert not [e for e in named(events, "rule_matched") if e["job_uuid"] == ancient]
    malformed = [e for e in named(events, "tapis_error") if broken in e["error"]]
    assert len(malformed) == 1
    assert "tags: expected a list of strings" in malformed[0]["error"]
