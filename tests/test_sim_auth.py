"""The simulator's login, tenant discovery and token checks, driven through real tapipy."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
import requests
from tapipy.configuration import Config
from tapipy.errors import UnauthorizedError
from tapipy.tapis import Tapis

FLEET = {
    "tenant": "designsafe",
    "users": {"alice": "alice-pw", "bob": "bob-pw"},
    "clients": {"watchdog": "client-secret"},
    "jobs": [{"status": "RUNNING", "owner": "alice"}],
}


def _claims(jwt: str) -> dict[str, object]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_client_with_tenant_id_makes_no_request(make_sim):
    sim, url = make_sim(FLEET)
    Tapis(
        base_url=url, tenant_id="designsafe", access_token=sim.mint_token("alice"), config=Config()
    )
    assert sim.requests == []


def test_client_without_tenant_id_asks_sites_and_tenants(make_sim, tapis):
    sim, url = make_sim(FLEET)
    client = tapis(sim, url, login=False, tenant=False)
    assert client.tenant_id == "designsafe"
    assert [(r.method, r.path) for r in sim.requests] == [
        ("GET", "/v3/sites"),
        ("GET", "/v3/tenants"),
    ]


def test_password_login_returns_decodable_jwt_with_tapis_claims(make_sim, tapis):
    sim, url = make_sim({**FLEET, "token_ttl": "2h"})
    client = tapis(sim, url, "bob")
    token = client.access_token.access_token
    claims = _claims(token)
    assert claims["tapis/username"] == "bob"
    assert claims["tapis/tenant_id"] == "designsafe"
    assert client.access_token.original_ttl == 7200
    assert client.refresh_token is None
    login = sim.requests[-1]
    assert (login.method, login.path, login.status, login.user) == (
        "POST",
        "/v3/oauth2/tokens",
        201,
        "bob",
    )
    jobs = client.jobs.getJobList()
    assert sim.requests[-1].user == "bob"
    assert jobs == []


def test_raw_token_envelope_has_expiry_fields(make_sim):
    _, url = make_sim(FLEET)
    resp = requests.post(
        f"{url}/v3/oauth2/tokens",
        json={"username": "alice", "password": "alice-pw", "grant_type": "password"},
        timeout=10,
    )
    assert resp.status_code == 201
    body = resp.json()
    assert set(body) == {"result", "status", "message", "version", "commit", "build", "metadata"}
    access = body["result"]["access_token"]
    assert set(access) == {"access_token", "expires_in", "expires_at", "jti"}
    assert access["expires_in"] == 4 * 3600
    assert datetime.fromisoformat(access["expires_at"]) > datetime.now(UTC)
    assert "refresh_token" not in body["result"]


def test_wrong_password_is_refused(make_sim):
    sim, url = make_sim(FLEET)
    client = Tapis(
        base_url=url, tenant_id="designsafe", username="alice", password="nope", config=Config()
    )
    with pytest.raises(UnauthorizedError) as err:
        client.get_tokens()
    assert "Invalid username/password" in err.value.message
    assert sim.requests[-1].status == 401


def test_refresh_token_only_with_client_credentials(make_sim, tapis):
    sim, url = make_sim(FLEET)
    client = tapis(sim, url, client_id="watchdog", client_key="client-secret")
    assert client.refresh_token is not None
    assert client.refresh_token.refresh_token.count(".") == 2
    bad = Tapis(
        base_url=url,
        tenant_id="designsafe",
        username="alice",
        password="alice-pw",
        client_id="watchdog",
        client_key="wrong",
        config=Config(),
    )
    with pytest.raises(UnauthorizedError):
        bad.get_tokens()


def test_expired_token_is_a_plain_text_401(make_sim, tapis):
    sim, url = make_sim({**FLEET, "token_ttl": "1m"})
    client = tapis(sim, url)
    client.jobs.getJobList()
    sim.advance(61)
    with pytest.raises(UnauthorizedError) as err:
        client.jobs.getJobList()
    assert isinstance(err.value.message, bytes)
    assert err.value.message.startswith(b"TAPIS_SECURITY_JWT_EXPIRED")
    assert err.value.response.headers["Content-Type"].startswith("text/plain")
    client.get_tokens()
    assert client.jobs.getJobList() is not None


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, b"TAPIS_SECURITY_MISSING_JWT_INFO"),
        ({"X-Tapis-Token": "not-a-jwt"}, b"TAPIS_SECURITY_JWT_PARSE_ERROR"),
    ],
)
def test_missing_or_garbled_token_is_a_plain_text_401(make_sim, headers, code):
    _, url = make_sim(FLEET)
    resp = requests.get(f"{url}/v3/jobs/list", headers=headers, timeout=10)
    assert resp.status_code == 401
    assert resp.content.startswith(code)


def test_token_signed_by_someone_else_is_refused(make_sim):
    sim, url = make_sim(FLEET)
    other = make_sim(FLEET, seed=99)[0]
    client = Tapis(
        base_url=url,
        tenant_id="designsafe",
        access_token=other.mint_token("alice"),
        config=Config(),
    )
    with pytest.raises(UnauthorizedError) as err:
        client.jobs.getJobList()
    assert err.value.message.startswith(b"TAPIS_SECURITY_JWT_INVALID_SIGNATURE")
    assert sim.requests[-1].user is None


def test_minted_token_works_and_expires_with_its_ttl(make_sim):
    sim, url = make_sim(FLEET)
    client = Tapis(
        base_url=url,
        tenant_id="designsafe",
        access_token=sim.mint_token("alice", ttl=30),
        config=Config(),
    )
    assert len(client.jobs.getJobList()) == 1
    sim.advance(31)
    with pytest.raises(UnauthorizedError):
        client.jobs.getJobList()
