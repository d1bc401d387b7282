"""poll_jobs against the simulator, over real HTTP through real tapipy.

Churn is injected by the simulator itself: a subclass runs a callback each time it answers a
search, so jobs move, finish and arrive between the pages of one poll.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from pydantic import SecretStr

from watchdog.errors import PollError, TapisAuthError, TapisUnavailableError
from watchdog.jobs import ACTIVE_STATUSES, SUMMARY_FIELDS, TERMINAL_STATUSES
from watchdog.poll.scan import (
    PollResult,
    key_position,
    pages_left,
    poll_jobs,
    ranges_needed,
    scans_for,
)
from watchdog.sim import Simulator
from watchdog.tapis.client import RetryPolicy, TapisClient

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from watchdog.sim.simulator import Outcome, Request

pytestmark = pytest.mark.anyio

USER, PASSWORD = "alice", "alice-pw"
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01)
STATUS_CYCLE = ("PENDING", "STAGING_INPUTS", "QUEUED", "RUNNING", "ARCHIVING", "BLOCKED")


class ChurningSimulator(Simulator):
    """The simulator, plus a callback after each search it answers (between a poll's pages)."""

    def __init__(self, fleet: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(fleet, **kwargs)
        self.after_search: Callable[[int], None] | None = None
        self.searches = 0

    def handle(self, request: Request) -> Outcome:
        outcome = super().handle(request)
        if request.path == "/v3/jobs/search" and self.after_search is not None:
            self.searches += 1
            self.after_search(self.searches)
        return outcome


def fleet(active: int, terminal: int = 0, **extra: Any) -> dict[str, Any]:
    jobs = [{"status": STATUS_CYCLE[i % len(STATUS_CYCLE)]} for i in range(active)]
    jobs += [{"status": ("FINISHED", "FAILED", "CANCELLED")[i % 3]} for i in range(terminal)]
    return {"users": {USER: PASSWORD, "bob": "bob-pw"}, "jobs": jobs, **extra}


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


@pytest.fixture
def served() -> Iterator[Callable[[ChurningSimulator], str]]:
    """Serve simulators for the test's duration; returns the base URL."""
    stack: list[Any] = []

    def serve(sim: ChurningSimulator) -> str:
        cm = sim.serve()
        server = cm.__enter__()
        stack.append(cm)
        return str(server.base_url)

    yield serve
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def active_uuids(sim: Simulator) -> set[str]:
    return {
        u
        for u in sim.uuids()
        if (j := sim.job(u))["status"] not in TERMINAL_STATUSES and j["owner"] == USER
    }


async def run_poll(
    sim: Simulator,
    base_url: str,
    *,
    page_size: int,
    max_ranges: int | None = None,
    on_malformed: Callable[[str | None, str], None] | None = None,
    settings: dict[str, Any] | None = None,
    retry: RetryPolicy = FAST,
    list_type: str = "MY_JOBS",
    on_error: Callable[[str, int | None, str, float | None], None] | None = None,
) -> PollResult:
    config = Settings(base_url, sim.tenant_id, **(settings or {}))
    async with TapisClient(config, retry=retry, on_error=on_error) as client:
        await client.login()
        with anyio.fail_after(50):
            return await poll_jobs(
                client,
                statuses=ACTIVE_STATUSES,
                list_type=list_type,
                page_size=page_size,
                fields=SUMMARY_FIELDS,
                on_malformed=on_malformed,
                max_ranges=max_ranges,
            )


def searches(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.endpoint == "search"]


def one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    assert values is None or len(values) == 1, (name, values)
    return values[0] if values else None


# -- what is sent -------------------------------------------------------------------------------


async def test_query_string_carries_conditions_order_select_and_keyset(served):
    sim = ChurningSimulator(fleet(active=7, terminal=4))
    result = await run_poll(sim, served(sim), page_size=2, max_ranges=1)

    assert {j.uuid for j in result.jobs} == active_uuids(sim)
    pages = searches(sim)
    assert len(pages) == result.pages == result.api_calls == 4
    ordered = sorted(active_uuids(sim))
    expected_after = [None, ordered[1], ordered[3], ordered[5]]
    for page, after in zip(pages, expected_after, strict=True):
        assert "status.in=" + "%2C".join(ACTIVE_STATUSES) in page.query
        assert one(page.params, "status.in") == ",".join(ACTIVE_STATUSES)
        assert one(page.params, "orderBy") == "uuid(asc)"
        assert one(page.params, "limit") == "2"
        assert one(page.params, "listType") == "MY_JOBS"
        selected = (one(page.params, "select") or "").split(",")
        assert selected[:2] == ["uuid", "status"]
        assert set(SUMMARY_FIELDS) <= set(selected)
        assert one(page.params, "uuid.gt") == after
        # Tapis declares startAfter an int and never uses it; skip shifts under churn.
        assert one(page.params, "startAfter") is None
        assert one(page.params, "skip") is None
        # The split is estimated from the key space: no count is asked of the server.
        assert one(page.params, "computeTotal") is None
    assert all(r.endpoint in {"tokens", "search"} for r in sim.requests)


async def test_empty_and_single_page_polls(served):
    sim = ChurningSimulator(fleet(active=0, terminal=3))
    result = await run_poll(sim, served(sim), page_size=5)
    assert result.jobs == ()
    assert (result.pages, result.api_calls, result.malformed) == (1, 1, 0)

    sim = ChurningSimulator(fleet(active=4))
    result = await run_poll(sim, served(sim), page_size=5)
    assert {j.uuid for j in result.jobs} == active_uuids(sim)
    assert result.pages == 1


@pytest.mark.parametrize(
    ("active", "page_size", "max_ranges"),
    [(1, 1, 4), (10, 1, 1), (25, 5, 1), (25, 5, 8), (230, 20, 4), (230, 7, 16), (40, 40, 4)],
)
async def test_multi_page_and_partitioned_polls_see_every_active_job_once(
    served, active: int, page_size: int, max_ranges: int
):
    sim = ChurningSimulator(fleet(active=active, terminal=active // 3))
    result = await run_poll(sim, served(sim), page_size=page_size, max_ranges=max_ranges)

    uuids = [j.uuid for j in result.jobs]
    assert len(uuids) == len(set(uuids))
    assert set(uuids) == active_uuids(sim)
    assert uuids == sorted(uuids)
    assert result.pages == result.api_calls == len(searches(sim))
    assert result.malformed == 0
    assert result.duration_s >= 0


async def test_partitioned_poll_splits_the_key_space_into_disjoint_ranges(served):
    sim = ChurningSimulator(fleet(active=300))
    result = await run_poll(sim, served(sim), page_size=25, max_ranges=4)

    assert {j.uuid for j in result.jobs} == active_uuids(sim)
    rest = searches(sim)[1:]
    lows = sorted({one(r.params, "uuid.gte") for r in rest} - {None})
    highs = sorted({one(r.params, "uuid.lt") for r in rest} - {None})
    assert len(lows) == len(highs) == 3
    assert lows == highs
    # One open-ended range below the first bound continues after the first page.
    first_last = sorted(active_uuids(sim))[24]
    assert any(
        one(r.params, "uuid.gt") == first_last and one(r.params, "uuid.lt") == lows[0] for r in rest
    )
    assert any(one(r.params, "uuid.gte") == lows[-1] and "uuid.lt" not in r.params for r in rest)


async def test_non_hex_uuids_are_scanned_in_one_range(served):
    sim = ChurningSimulator(
        {
            "users": {USER: PASSWORD},
            "jobs": [{"uuid": f"job-{i:03d}", "status": "RUNNING"} for i in range(12)],
        }
    )
    result = await run_poll(sim, served(sim), page_size=5, max_ranges=4)
    assert [j.uuid for j in result.jobs] == [f"job-{i:03d}" for i in range(12)]
    assert all("uuid.gte" not in r.params and "uuid.lt" not in r.params for r in searches(sim))


# -- churn -----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_ranges", [1, 4])
async def test_every_job_that_stays_active_is_seen_under_churn(served, max_ranges: int):
    sim = ChurningSimulator(fleet(active=240, terminal=40))
    rng = random.Random(7)
    finished: set[str] = set()
    arrived: set[str] = set()

    def churn(_: int) -> None:
        live = sorted(active_uuids(sim) - finished)
        for uuid in rng.sample(live, 6):  # move between active statuses
            sim.set_status(uuid, rng.choice(STATUS_CYCLE))
        for uuid in rng.sample(live, 3):  # end
            sim.set_status(uuid, rng.choice(sorted(TERMINAL_STATUSES)))
            finished.add(uuid)
        for _ in range(3):  # arrive
            arrived.add(sim.add_job({"status": rng.choice(STATUS_CYCLE)}))

    stayed_active = active_uuids(sim)
    sim.after_search = churn
    result = await run_poll(sim, served(sim), page_size=10, max_ranges=max_ranges)

    stayed_active -= finished
    seen = {j.uuid for j in result.jobs}
    assert sim.searches == result.pages > 10
    assert stayed_active <= seen
    assert seen <= stayed_active | finished | arrived
    assert len(seen) == len(result.jobs)


async def test_skip_paging_would_miss_jobs_under_the_same_churn(served):
    """The churn above is strong enough to matter: plain skip paging loses active jobs."""
    sim = ChurningSimulator(fleet(active=240, terminal=40))
    rng = random.Random(7)
    finished: set[str] = set()

    def churn(_: int) -> None:
        live = sorted(active_uuids(sim) - finished)
        for uuid in rng.sample(live, 3):
            sim.set_status(uuid, rng.choice(sorted(TERMINAL_STATUSES)))
            finished.add(uuid)

    stayed_active = active_uuids(sim)
    sim.after_search = churn
    base_url = served(sim)
    seen: set[str] = set()
    async with TapisClient(Settings(base_url, sim.tenant_id), retry=FAST) as client:
        await client.login()
        skip = 0
        while True:
            page = await client.search_jobs(
                conditions={"status.in": ",".join(ACTIVE_STATUSES), "skip": str(skip)},
                select=["uuid", "status"],
                limit=10,
                order_by="uuid(asc)",
            )
            seen |= {r["uuid"] for r in page.records}
            skip += len(page.records)
            if len(page.records) < 10:
                break
    assert stayed_active - finished - seen


# -- failures -----------------------------------------------------------------------------------


async def test_a_failing_page_fails_the_poll(served):
    sim = ChurningSimulator(fleet(active=60))

    def break_later_pages(n: int) -> None:
        if n == 2:
            sim.set_fault(kind="error", endpoint="search", status=503)

    sim.after_search = break_later_pages
    errors: list[tuple[str, int | None, str, float | None]] = []
    with pytest.raises(PollError) as caught:
        await run_poll(
            sim, served(sim), page_size=10, max_ranges=1, on_error=lambda *a: errors.append(a)
        )
    assert isinstance(caught.value.__cause__, TapisUnavailableError)
    assert caught.value.http_status == 503
    assert [e[1] for e in errors] == [503] * FAST.attempts
    assert errors[-1][3] is None


async def test_a_failing_range_fails_a_partitioned_poll(served):
    sim = ChurningSimulator(fleet(active=200))

    def break_after_first(n: int) -> None:
        if n == 1:
            sim.set_fault(kind="error", endpoint="search", status=500, count=50)

    sim.after_search = break_after_first
    with pytest.raises(PollError) as caught:
        await run_poll(sim, served(sim), page_size=10, max_ranges=4)
    assert isinstance(caught.value.__cause__, TapisUnavailableError)


async def test_a_hanging_search_times_out_and_fails_the_poll(served):
    sim = ChurningSimulator(
        fleet(active=3, faults=[{"kind": "hang", "endpoint": "search", "seconds": 3}])
    )
    with pytest.raises(PollError) as caught:
        await run_poll(
            sim,
            served(sim),
            page_size=10,
            settings={"timeout": timedelta(milliseconds=200)},
            retry=RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.001),
        )
    assert caught.value.http_status is None
    assert isinstance(caught.value.__cause__, TapisUnavailableError)


async def test_a_garbled_page_is_retried(served):
    sim = ChurningSimulator(
        fleet(active=5, faults=[{"kind": "malformed", "endpoint": "search", "count": 1}])
    )
    result = await run_poll(sim, served(sim), page_size=10)
    assert {j.uuid for j in result.jobs} == active_uuids(sim)
    assert (result.pages, result.api_calls) == (1, 2)


async def test_503_and_429_with_retry_after_are_retried_within_the_poll(served):
    sim = ChurningSimulator(
        fleet(
            active=30,
            faults=[
                {"kind": "error", "endpoint": "search", "status": 503, "count": 1},
                {"kind": "rate_limit", "endpoint": "search", "seconds": 0, "count": 1},
            ],
        )
    )
    errors: list[tuple[str, int | None, str, float | None]] = []
    result = await run_poll(
        sim, served(sim), page_size=10, max_ranges=1, on_error=lambda *a: errors.append(a)
    )
    assert {j.uuid for j in result.jobs} == active_uuids(sim)
    assert [(op, status) for op, status, _, _ in errors] == [
        ("search_jobs", 503),
        ("search_jobs", 429),
    ]
    assert errors[1][3] == 0.0
    assert result.api_calls == result.pages + 2


async def test_malformed_record_is_skipped_and_reported(served):
    sim = ChurningSimulator(fleet(active=9))
    bad = sorted(active_uuids(sim))[4]
    sim.update_job(bad, created="yesterday-ish")
    reported: list[tuple[str | None, str]] = []
    result = await run_poll(
        sim, served(sim), page_size=3, on_malformed=lambda u, d: reported.append((u, d))
    )
    assert {j.uuid for j in result.jobs} == active_uuids(sim) - {bad}
    assert result.malformed == 1
    assert len(reported) == 1
    assert reported[0][0] == bad
    assert "created" in reported[0][1]


async def test_token_expiring_mid_poll_logs_in_again(served):
    sim = ChurningSimulator(
        fleet(active=40, faults=[{"kind": "token_ttl", "seconds": 60, "count": 1}])
    )

    def expire(n: int) -> None:
        if n == 2:
            sim.advance(120)

    sim.after_search = expire
    errors: list[tuple[str, int | None, str, float | None]] = []
    result = await run_poll(
        sim, served(sim), page_size=10, max_ranges=1, on_error=lambda *a: errors.append(a)
    )
    assert {j.uuid for j in result.jobs} == active_uuids(sim)
    assert [r.endpoint for r in sim.requests].count("tokens") == 2
    assert [(op, status) for op, status, _, _ in errors] == [("search_jobs", 401)]
    assert result.api_calls == result.pages + 1


async def test_identity_that_cannot_log_in_is_an_auth_error_not_a_poll_error(served):
    sim = ChurningSimulator(fleet(active=40))
    token = sim.mint_token(USER, ttl=60)

    def expire(n: int) -> None:
        if n == 1:
            sim.advance(120)

    sim.after_search = expire
    with pytest.raises(TapisAuthError):
        await run_poll(
            sim,
            served(sim),
            page_size=10,
            settings={"username": None, "password": None, "access_token": SecretStr(token)},
        )


# -- when to split ------------------------------------------------------------------------------


def key_bounds(sim: Simulator) -> list[Any]:
    return [r for r in searches(sim) if "uuid.gte" in r.params or "uuid.lt" in r.params]


async def test_by_default_a_fast_server_is_scanned_in_one_range(served):
    sim = ChurningSimulator(fleet(active=60))
    result = await run_poll(sim, served(sim), page_size=5)

    assert [j.uuid for j in result.jobs] == sorted(active_uuids(sim))
    assert result.ranges == 1
    assert result.pages == result.api_calls == len(searches(sim)) == 13
    assert key_bounds(sim) == []


async def test_by_default_a_slow_second_page_splits_the_rest_of_the_scan(served):
    sim = ChurningSimulator(fleet(active=120))

    def slow_second_page(n: int) -> None:
        if n == 1:  # ~28 more pages (from the key space) at 1 s each: a 28 s scan, split
            sim.set_fault(kind="latency", endpoint="search", seconds=1.0, count=1)

    sim.after_search = slow_second_page
    result = await run_poll(sim, served(sim), page_size=4)

    uuids = [j.uuid for j in result.jobs]
    assert uuids == sorted(active_uuids(sim))
    assert 2 <= result.ranges <= 4  # two, or more on a machine slower than the fault
    assert result.pages == result.api_calls == len(searches(sim))
    pages = searches(sim)
    ordered = sorted(active_uuids(sim))
    # The first two pages are one keyset scan; the rest is cut after the second page.
    assert one(pages[1].params, "uuid.gt") == ordered[3]
    assert "uuid.lt" not in pages[1].params
    bounded = key_bounds(sim)
    assert {one(r.params, "uuid.lt") for r in bounded} - {None} == {
        one(r.params, "uuid.gte") for r in bounded
    } - {None}
    assert any(one(r.params, "uuid.gt") == ordered[7] for r in bounded)


@pytest.mark.parametrize(
    ("pages", "latency_s", "max_ranges", "expected"),
    [
        (None, 5.0, None, 1),  # no total: one range
        (1, 60.0, None, 1),
        (100, 0.05, None, 1),  # 5 s projected: not worth it
        (100, 0.15, None, 2),  # 15 s: two ranges of about 10 s
        (100, 2.0, None, 8),  # 200 s: as many as the client runs at once
        (3, 30.0, None, 3),  # never more ranges than pages
        (100, 0.0, 4, 4),  # explicit: split whatever the latency
        (2, 0.0, 4, 2),
        (None, 0.0, 4, 1),
    ],
)
def test_ranges_needed(
    pages: int | None, latency_s: float, max_ranges: int | None, expected: int
) -> None:
    assert (
        ranges_needed(pages, latency_s=latency_s, max_ranges=max_ranges, concurrency=8) == expected
    )


def test_pages_left_is_estimated_from_the_key_space() -> None:
    # A scan that reached a quarter of the key space in 2 pages has about 6 to go.
    assert pages_left("40000000-0000-4000-8000-000000000000-007", pages_done=2) == 6
    assert pages_left("80000000-aaaa", pages_done=5) == 5
    assert pages_left("00000000-aaaa", pages_done=1) is None  # at the very start: unknown
    assert pages_left("job-0042", pages_done=3) is None  # not a hex uuid: unknown
    assert key_position("c0000000-1") == 0.75


# -- list types ---------------------------------------------------------------------------------


def test_all_jobs_is_scanned_as_my_jobs_and_shared_jobs() -> None:
    assert scans_for("ALL_JOBS") == ("MY_JOBS", "SHARED_JOBS")
    assert scans_for("MY_JOBS") == ("MY_JOBS",)
    assert scans_for("SHARED_JOBS") == ("SHARED_JOBS",)


@pytest.mark.parametrize("max_ranges", [None, 1, 3])
async def test_all_jobs_sees_own_and_shared_jobs_whose_uuids_interleave(
    served, max_ranges: int | None
):
    own = [{"status": STATUS_CYCLE[i % 6]} for i in range(23)]
    shared = [{"status": "RUNNING", "owner": "bob", "shared_with": [USER]} for _ in range(17)]
    hidden = [{"status": "RUNNING", "owner": "bob"} for _ in range(5)]  # neither own nor shared
    both = [{"status": "QUEUED", "shared_with": [USER]}]  # own, and shared with its owner
    sim = ChurningSimulator(
        {"users": {USER: PASSWORD, "bob": "bob-pw"}, "jobs": own + shared + hidden + both}
    )
    expected = {u for u in sim.uuids() if sim.job(u)["owner"] == USER or USER in sim.shared_with(u)}
    ordered = sorted(expected)
    owners = [sim.job(u)["owner"] for u in ordered]
    assert any(a != b for a, b in itertools.pairwise(owners))  # own and shared interleave

    result = await run_poll(
        sim, served(sim), page_size=5, max_ranges=max_ranges, list_type="ALL_JOBS"
    )

    uuids = [j.uuid for j in result.jobs]
    assert uuids == ordered  # each exactly once
    assert result.scans == ("MY_JOBS", "SHARED_JOBS")
    list_types = {one(r.params, "listType") for r in searches(sim)}
    assert list_types == {"MY_JOBS", "SHARED_JOBS"}  # never the unordered ALL_JOBS answer


class IgnoringKeySimulator(ChurningSimulator):
    """A server that drops the uuid.gt condition: the same first page again and again."""

    def handle(self, request: Request) -> Outcome:
        if request.path == "/v3/jobs/search":
            query = "&".join(p for p in request.query.split("&") if not p.startswith("uuid.gt="))
            request = dataclasses.replace(request, query=query)
        return super().handle(request)


async def test_a_server_that_ignores_the_key_condition_fails_the_poll_instead_of_looping(served):
    sim = IgnoringKeySimulator(fleet(active=12))
    with pytest.raises(PollError, match=r"page of the MY_JOBS scan brought no job not seen before"):
        await run_poll(sim, served(sim), page_size=5)
    assert len(searches(sim)) <= 3  # the second page, and the third already asked for
