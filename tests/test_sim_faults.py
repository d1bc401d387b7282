"""Fault injection: every kind, counts, probabilities by seed, fleet and control-API faults."""

from __future__ import annotations

import time

import pytest
import requests
from tapipy.errors import BaseTapyException, InternalServerError, ServiceUnavailableError

from watchdog.sim import Fault, Simulator

FLEET = {"users": {"alice": "alice-pw"}, "jobs": [{"uuid": "j-007", "status": "RUNNING"}]}


@pytest.fixture
def env(make_sim, tapis):
    sim, url = make_sim(FLEET)
    return sim, url, tapis(sim, url)


def test_error_faults_answer_5xx(env):
    sim, _, client = env
    sim.set_fault(kind="error", endpoint="search", status=503, count=1)
    with pytest.raises(ServiceUnavailableError):
        client.jobs.getJobSearchList()
    sim.set_fault(kind="error", endpoint="get", count=1)
    with pytest.raises(InternalServerError):
        client.jobs.getJob(jobUuid="j-007")
    assert len(client.jobs.getJobSearchList()) == 1
    assert [(r.endpoint, r.status, r.fault) for r in sim.requests[-3:]] == [
        ("search", 503, "error"),
        ("get", 500, "error"),
        ("search", 200, None),
    ]


def test_count_limits_a_fault_to_the_next_n_requests(env):
    sim, _, client = env
    sim.set_fault(kind="error", endpoint="search", count=3)
    for _ in range(3):
        with pytest.raises(InternalServerError):
            client.jobs.getJobSearchList()
    assert client.jobs.getJobStatus(jobUuid="j-007").status == "RUNNING"
    assert len(client.jobs.getJobSearchList()) == 1
    assert sim.faults.faults == ()


def test_rate_limit_sends_429_with_retry_after(env):
    sim, _, client = env
    sim.set_fault(kind="rate_limit", endpoint="*", seconds=7, count=1)
    with pytest.raises(BaseTapyException) as err:
        client.jobs.getJobStatus(jobUuid="j-007")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"


def test_reset_drops_the_connection(env):
    sim, _, client = env
    sim.set_fault(kind="reset", endpoint="status", count=1)
    with pytest.raises(BaseTapyException) as err:
        client.jobs.getJobStatus(jobUuid="j-007")
    assert err.value.response is None
    assert sim.requests[-1].status == 0
    assert client.jobs.getJobStatus(jobUuid="j-007").status == "RUNNING"


def test_hang_holds_the_connection_and_server_still_stops(env):
    sim, url, _ = env
    sim.set_fault(kind="hang", endpoint="search", seconds=600, count=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(
            f"{url}/v3/jobs/search", headers={"X-Tapis-Token": sim.mint_token("alice")}, timeout=0.3
        )
    assert sim.requests[-1].fault == "hang"


def test_latency_delays_the_answer(env):
    sim, _, client = env
    sim.set_fault(kind="latency", endpoint="status", seconds=0.3, count=1)
    begin = time.monotonic()
    assert client.jobs.getJobStatus(jobUuid="j-007").status == "RUNNING"
    assert time.monotonic() - begin >= 0.25
    assert sim.requests[-1].fault is None


def test_malformed_json_reaches_tapipy_as_bytes(env):
    sim, _, client = env
    sim.set_fault(kind="malformed", endpoint="search", count=1)
    result = client.jobs.getJobSearchList()
    assert isinstance(result, bytes)
    assert sim.requests[-1].fault == "malformed"


def test_token_ttl_fault_issues_short_tokens(env):
    sim, _, client = env
    sim.set_fault(kind="token_ttl", seconds=5, count=1)
    client.get_tokens()
    assert client.access_token.original_ttl == 5
    sim.advance(6)
    with pytest.raises(BaseTapyException) as err:
        client.jobs.getJobList()
    assert err.value.message.startswith(b"TAPIS_SECURITY_JWT_EXPIRED")


def _pattern(seed: int) -> list[bool]:
    sim = Simulator(FLEET, seed=seed)
    sim.set_fault(kind="error", endpoint="search", probability=0.5)
    return [sim.faults.draw("search")[1] is not None for _ in range(40)]


def test_probability_is_deterministic_by_seed():
    assert _pattern(7) == _pattern(7)
    assert 5 < sum(_pattern(7)) < 35
    assert _pattern(7) != _pattern(8)


def test_faults_from_the_fleet(make_sim, tapis):
    sim, url = make_sim({**FLEET, "faults": [{"kind": "error", "endpoint": "list", "count": 1}]})
    client = tapis(sim, url)
    with pytest.raises(InternalServerError):
        client.jobs.getJobList()
    assert len(client.jobs.getJobList()) == 1


def test_faults_and_jobs_through_the_control_api(env):
    sim, url, client = env
    resp = requests.post(
        f"{url}/_sim/faults", json={"kind": "error", "endpoint": "search", "count": 1}, timeout=5
    )
    assert resp.status_code == 201
    with pytest.raises(InternalServerError):
        client.jobs.getJobSearchList()
    uuid = requests.post(f"{url}/_sim/jobs", json={"status": "QUEUED"}, timeout=5).json()["uuid"]
    requests.post(f"{url}/_sim/jobs/{uuid}/status", json={"status": "RUNNING"}, timeout=5)
    assert client.jobs.getJobStatus(jobUuid=uuid).status == "RUNNING"
    log = requests.get(f"{url}/_sim/requests", timeout=5).json()
    assert [r["endpoint"] for r in log][-2:] == ["search", "status"]
    assert requests.delete(f"{url}/_sim/requests", timeout=5).ok
    assert sim.requests == []
    assert requests.post(f"{url}/_sim/faults", json={"kind": "nope"}, timeout=5).status_code == 400


def test_bad_faults_are_refused():
    with pytest.raises(ValueError, match="kind"):
        Fault(kind="explode")
    with pytest.raises(ValueError, match="endpoint"):
        Fault(kind="error", endpoint="everything")
    with pytest.raises(ValueError, match="status"):
        Fault(kind="error", status=404)
    with pytest.raises(ValueError, match="unknown key"):
        Fault.from_dict({"kind": "error", "when": "always"})
