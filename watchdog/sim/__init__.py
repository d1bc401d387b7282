"""A simulated Tapis v3 tenant over HTTP, for tests, the demo and benchmarks.

It serves what a watchdog touches, with the shapes, codes and quirks the Jobs service's code has
(each one, its source and its test in `docs/tapis-conformance.md`): `POST /v3/oauth2/tokens`,
`GET /v3/sites` and `/v3/tenants`, and under
`/v3/jobs`: `search` (conditions, select, paging, listType), `list`, `{uuid}`, `{uuid}/status`,
`{uuid}/history`, `{uuid}/cancel` (lands after `cancel_delay`), `{uuid}/sendEvent`,
`{uuid}/hide` / `unhide`, `healthcheck` / `readycheck`. Token problems answer plain-text 401s.

In-process use::

    from watchdog.sim import Simulator

    fleet = {"users": {"alice": "pw"}, "jobs": [{"status": "RUNNING", "remoteStarted": "-13h"}]}
    sim = Simulator(fleet)
    with sim.serve() as server:                      # host="127.0.0.1", port=0 (a free one)
        server.base_url                              # "http://127.0.0.1:PORT"
        sim.tenant_id, sim.users                     # "designsafe", {"alice": "pw"}
        token = sim.mint_token("alice")              # a valid JWT (ttl= seconds or timedelta)
        uuid = sim.add_job({"status": "QUEUED"})     # partial record → uuid
        sim.job(uuid), sim.history(uuid)             # copies of the record / history events
        sim.set_status(uuid, "FAILED", "SCHEDULER_TIMEOUT")
        sim.set_fault(kind="error", endpoint="search", count=3)    # or sim.set_fault(Fault(...))
        sim.clear_faults()
        sim.advance(60)                              # move the clock: cancels land, tokens expire
        sim.requests                                 # [RequestRecord(method, path, query, params,
        sim.clear_requests()                         #   user, status, endpoint, fault, time)]

`Simulator(fleet, *, seed=0, live=False)` takes a `Fleet`, a fleet dict, or None (one user
`alice`/`alice-password`, no jobs). `load_fleet(path)` reads a YAML/JSON fleet file,
`Fleet.from_dict(data)` validates a dict (both raise `ConfigError`), `generate_fleet(n, seed)`
builds a realistic synthetic fleet. Fleet format: `watchdog.sim.fleet`. Faults:
`watchdog.sim.faults`. Control API for an out-of-process simulator: `watchdog.sim.server`.
`tapis-watchdog sim` runs one from the command line (`watchdog.sim.cli`).
"""

from __future__ import annotations

from watchdog.sim.faults import Fault
from watchdog.sim.fleet import DEFAULT_FLEET, Fleet, LiveSettings, load_fleet
from watchdog.sim.generate import generate_fleet
from watchdog.sim.simulator import RequestRecord, Simulator

__all__ = [
    "DEFAULT_FLEET",
    "Fault",
    "Fleet",
    "LiveSettings",
    "RequestRecord",
    "Simulator",
    "generate_fleet",
    "load_fleet",
]
