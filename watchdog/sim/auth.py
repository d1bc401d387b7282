"""Login and tenant discovery: `POST /v3/oauth2/tokens`, `GET /v3/sites`, `GET /v3/tenants`."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from watchdog.jobs import format_timestamp as format_ts
from watchdog.sim import api
from watchdog.sim.tokens import TokenError, mint_jwt, verify_jwt

if TYPE_CHECKING:
    from collections.abc import Mapping

    from watchdog.sim.fleet import Fleet


def tokens(  # noqa: C901, PLR0911, PLR0917 - one answer per way a login can fail
    fleet: Fleet,
    key: bytes,
    body_bytes: bytes,
    headers: Mapping[str, str],
    now: datetime,
    ttl: timedelta | None,
) -> tuple[api.Reply, str | None]:
    """`POST /v3/oauth2/tokens`: the password grant, or refresh_token with client credentials."""
    try:
        body = orjson.loads(body_bytes or b"{}")
    except orjson.JSONDecodeError:
        return api.error(400, "Invalid JSON in request body."), None
    if not isinstance(body, dict):
        return api.error(400, "Invalid request body."), None
    client = _basic_auth(headers.get("authorization", ""))
    if client is not None and fleet.clients and fleet.clients.get(client[0]) != client[1]:
        return api.error(401, "Invalid client credentials."), None
    grant = body.get("grant_type")
    if grant == "password":
        username = body.get("username")
        if not isinstance(username, str) or fleet.users.get(username) != body.get("password"):
            return api.error(401, "Invalid username/password combination."), None
    elif grant == "refresh_token":
        if client is None:
            return api.error(
                400, "Client credentials are required for the refresh_token grant."
            ), None
        try:
            claims = verify_jwt(body.get("refresh_token"), key=key, now=now)
        except TokenError as exc:
            return api.error(401, f"Invalid refresh token: {exc}"), None
        if claims.get("tapis/token_type") != "refresh":
            return api.error(401, "Invalid refresh token: not a refresh token."), None
        username = str(claims["tapis/username"])
    else:
        return api.error(400, f"Invalid grant_type: {grant!r}."), None
    life = ttl or fleet.token_ttl
    access = _token_info(fleet, key, username, now, life, "access")
    result: dict[str, Any] = {"access_token": access}
    if client is not None:
        result["refresh_token"] = _token_info(
            fleet, key, username, now, timedelta(days=365), "refresh"
        )
    return api.envelope(orjson.dumps(result), "Token created successfully.", status=201), username


def _token_info(  # noqa: PLR0917 - private helper, called twice
    fleet: Fleet, key: bytes, username: str, now: datetime, life: timedelta, kind: str
) -> dict[str, Any]:
    token, claims = mint_jwt(
        key=key,
        username=username,
        tenant_id=fleet.tenant,
        issued=now,
        ttl=life,
        token_type=kind,
    )
    return {
        f"{kind}_token": token,
        "expires_in": int(life.total_seconds()),
        "expires_at": format_ts(now + life),
        "jti": claims["jti"],
    }


def _basic_auth(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        ident, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return ident, secret


def site(base_url: str) -> dict[str, Any]:
    return {
        "site_id": "tacc",
        "primary": True,
        "base_url": base_url,
        "tenant_base_url_template": "https://${tenant_id}.tapis.io",
        "site_admin_tenant_id": "admin",
        "services": ["authenticator", "jobs", "tenants", "tokens"],
    }


def tenant(tenant_id: str, base_url: str) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "base_url": base_url,
        "site_id": "tacc",
        "status": "active",
        "description": "Simulated Tapis tenant",
        "public_key": "-----BEGIN PUBLIC KEY-----\nsimulated\n-----END PUBLIC KEY-----",
        "token_service": f"{base_url}/v3/tokens",
        "security_kernel": f"{base_url}/v3/security",
        "authenticator": f"{base_url}/v3/oauth2",
        "admin_user": "admin",
        "token_gen_services": ["authenticator"],
    }
