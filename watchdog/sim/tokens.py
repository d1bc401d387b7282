"""Tapis-style JWTs for the simulator: HS256, built with the standard library only.

Real Tapis signs with RS256 and a per-tenant key; tapipy never checks the signature, so HS256 with
the simulator's own key keeps tokens decodable by tapipy and verifiable by the simulator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime, timedelta


@dataclass(frozen=True)
class TokenError(Exception):
    """A token the simulator refuses; `code` is the Tapis message code sent back as plain text."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code} {self.detail}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_jwt(
    *,
    key: bytes,
    username: str,
    tenant_id: str,
    issued: datetime,
    ttl: timedelta,
    token_type: str = "access",  # noqa: S107 - a claim value, not a secret
    issuer: str = "https://sim.tapis.io/v3/tokens",
) -> tuple[str, dict[str, Any]]:
    """Build a signed JWT carrying the claims Tapis puts in its tokens; return it and its claims."""
    exp = int((issued + ttl).timestamp())
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "sub": f"{username}@{tenant_id}",
        "tapis/tenant_id": tenant_id,
        "tapis/token_type": token_type,
        "tapis/delegation": False,
        "tapis/delegation_sub": None,
        "tapis/username": username,
        "tapis/account_type": "user",
        "exp": exp,
        "tapis/client_id": None,
        "tapis/grant_type": "password",
    }
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}", claims


def verify_jwt(token: str | None, *, key: bytes, now: datetime) -> dict[str, Any]:
    """Check a token's signature and expiry and return its claims.

    Raises:
        TokenError: the token is missing, unreadable, not signed by this simulator, or expired.
    """
    if not token:
        raise TokenError("TAPIS_SECURITY_MISSING_JWT_INFO", "No JWT found in X-Tapis-Token header.")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("TAPIS_SECURITY_JWT_PARSE_ERROR", "Unable to parse JWT.")
    try:
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("TAPIS_SECURITY_JWT_PARSE_ERROR", f"Unable to parse JWT: {exc}") from exc
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not isinstance(claims, dict) or not hmac.compare_digest(signature, expected):
        raise TokenError("TAPIS_SECURITY_JWT_INVALID_SIGNATURE", "JWT signature is not valid.")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now.timestamp():
        raise TokenError(
            "TAPIS_SECURITY_JWT_EXPIRED",
            f"The JWT for user {claims.get('tapis/username')} has expired.",
        )
    if not isinstance(claims.get("tapis/username"), str) or not isinstance(
        claims.get("tapis/tenant_id"), str
    ):
        raise TokenError("TAPIS_SECURITY_JWT_PARSE_ERROR", "JWT lacks username or tenant claims.")
    return claims
