"""Shared fixtures: an in-process Tapis simulator on a free loopback port, and tapipy clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
from tapipy.configuration import Config
from tapipy.tapis import Tapis

from watchdog.sim import Simulator

if TYPE_CHECKING:
    from pathlib import Path

MakeSim = Callable[..., tuple[Simulator, str]]


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    """`make_sim(fleet_dict=None, *, seed=0, live=False) -> (sim, base_url)`.

    Starts a simulator serving on 127.0.0.1 (a free port); every one started is stopped at
    teardown, its threads joined.
    """
    with ExitStack() as stack:

        def start(fleet: Mapping[str, Any] | None = None, **kwargs: Any) -> tuple[Simulator, str]:
            sim = Simulator(fleet, **kwargs)
            server = stack.enter_context(sim.serve())
            return sim, server.base_url

        yield start


def tapis_client(
    sim: Simulator,
    base_url: str,
    username: str | None = None,
    *,
    login: bool = True,
    tenant: bool = True,
    **kwargs: Any,
) -> Any:
    """A real tapipy client for the simulator, built offline (never downloads specs).

    Logs in with the user's password from the fleet (default: the first user) unless
    `login=False`; `tenant=False` leaves out `tenant_id` so tapipy asks /v3/sites and /v3/tenants.
    """
    user = username or next(iter(sim.users))
    client = Tapis(
        base_url=base_url,
        tenant_id=sim.tenant_id if tenant else None,
        username=user,
        password=sim.users.get(user),
        config=Config(),
        download_latest_specs=False,
        **kwargs,
    )
    if login:
        client.get_tokens()
    return client


@pytest.fixture
def tapis() -> Callable[..., Any]:
    """The `tapis_client` helper as a fixture: `tapis(sim, base_url, username=None, ...)`."""
    return tapis_client


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Any]:
    """The end-to-end tests' tenant factory (see test_e2e_harness.tenants)."""
    from test_e2e_harness import tenants  # noqa: PLC0415 - only the e2e tests need it

    with tenants(tmp_path) as start:
        yield start
