"""Taking secrets out of text that came from outside: Tapis answers, exceptions, URLs.

Two kinds of secret are removed, each replaced by `***`:

- credentials by their shape, whatever their value and whether or not they were registered: any
  JWT, the value of an `Authorization:` or `X-Tapis-Token:` header, the password of a URL
  (`scheme://user:PASSWORD@host`), and the value of a password-, secret-, key- or token-named field
  in a query string or JSON (`password=...`, `"client_key": "..."`);
- registered secrets (the configured password, access token, client key, notification URLs, and
  the HTTP Basic value built from the client id and key). A secret of `LONG_SECRET` characters or
  more is removed wherever it appears. A shorter one is removed only where it stands as the whole
  value; inside ordinary text it cannot be told from a word (`a`, `login`), and replacing it there
  would both wreck the text and point at the password.

What the daemon itself writes is never touched: `scrub_event` leaves keys, the event name, the
level, the timestamp and the fields holding the daemon's own vocabulary (`operation`, `outcome`,
`why`, statuses, rule names, uuids, numbers, booleans) as they are.

This module imports nothing from the package, so every layer can use it.
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any
from urllib.parse import quote

__all__ = [
    "LONG_SECRET",
    "PROTECTED_FIELDS",
    "REDACTED",
    "clear_secrets",
    "register_basic_credentials",
    "register_secret",
    "scrub",
    "scrub_event",
    "scrub_text",
]

REDACTED = "***"
LONG_SECRET = 8
"""Secrets at least this long are removed anywhere in a text; shorter ones only as whole values."""

PROTECTED_FIELDS = frozenset(
    {
        "timestamp",
        "level",
        "event",
        "operation",
        "outcome",
        "why",
        "status",
        "final_status",
        "rule",
        "job_uuid",
        "dry_run",
        "version",
        "config_path",
        "metrics_url",
        "failed_event",
        "listener",
        "http_status",
        "restart_needed",
    }
)
"""Event fields whose values the daemon writes itself; scrubbing leaves them alone."""

_KEYS = r"(?:password|passwd|client_key|client_secret|access_token|refresh_token|secret)"
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Any JWT: tokens issued by a login are not in the configuration, and each is a credential.
    (re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*"), REDACTED),
    # Header values, in raw HTTP, in a dict's repr or in JSON: up to the end of the value.
    (
        re.compile(r"""(?i)\b((?:authorization|x-tapis-token)["']?\s*[:=]\s*["']?)[^"'\r\n]+"""),
        rf"\1{REDACTED}",
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    # password=... in a query string or form body; "password": "..." in JSON or a dict's repr.
    # (Not `password: value` in prose: that is how configuration errors name their key.)
    (re.compile(rf"(?i)\b({_KEYS}=)[^&\s\"',;]+"), rf"\1{REDACTED}"),
    (re.compile(rf'(?i)("{_KEYS}"\s*:\s*")(?:[^"\\]|\\.)*'), rf"\1{REDACTED}"),
    (re.compile(rf"(?i)('{_KEYS}'\s*:\s*')(?:[^'\\]|\\.)*"), rf"\1{REDACTED}"),
)

# One search says whether any shape can be present; most texts (reasons, names) have none.
_MAYBE_SHAPED = re.compile(rf"(?i)eyJ|://|authorization|x-tapis-token|{_KEYS}")

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_pattern: re.Pattern[str] | None = None


def _compile(secrets: frozenset[str]) -> re.Pattern[str] | None:
    long = sorted((s for s in secrets if len(s) >= LONG_SECRET), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, long))) if long else None


def register_secret(value: str | None) -> None:
    """Never let `value`, nor its URL-encoded forms, reach a log; blank values are ignored."""
    global _secrets, _pattern  # noqa: PLW0603 - one registry per process, read on every event
    if not value or not value.strip():
        return
    with _lock:
        _secrets = _secrets | {value, quote(value, safe=""), quote(value)}
        _pattern = _compile(_secrets)


def register_basic_credentials(client_id: str | None, client_key: str | None) -> None:
    """Register the HTTP Basic value (base64 of `client_id:client_key`) an OAuth client sends."""
    if client_id and client_key:
        register_secret(base64.b64encode(f"{client_id}:{client_key}".encode()).decode())


def clear_secrets() -> None:
    """Forget every registered secret (for tests that register weak ones on purpose)."""
    global _secrets, _pattern
    with _lock:
        _secrets, _pattern = frozenset(), None


def scrub_text(text: str, extra: tuple[str, ...] = ()) -> str:
    """`text` without credentials by their shape and without registered secrets (and `extra`).

    A secret shorter than `LONG_SECRET` is replaced only when it is the whole text.
    """
    secrets = _secrets | set(extra) if extra else _secrets
    if text in secrets:
        return REDACTED
    if _MAYBE_SHAPED.search(text):
        for shape, replacement in _SHAPES:
            text = shape.sub(replacement, text)
    pattern = _pattern if not extra else _compile(secrets)
    return pattern.sub(REDACTED, text) if pattern is not None else text


def scrub(value: Any) -> Any:  # noqa: PLR0911 - a return per kind
    """`value` scrubbed as outside text, recursively; numbers, booleans and None are kept.

    Dict keys are kept. Bytes and other objects (exceptions, paths) become scrubbed text when their
    text holds a secret; otherwise they are returned as they were.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
        clean = scrub_text(text)
        return clean if clean != text else value
    # Renderers fall back to str() or repr() for other objects (exceptions, paths, ...).
    for text in (str(value), repr(value)):
        clean = scrub_text(text)
        if clean != text:
            return clean
    return value


def scrub_event(event: dict[str, Any]) -> dict[str, Any]:
    """A copy of `event` with every field scrubbed except `PROTECTED_FIELDS`."""
    return {k: v if k in PROTECTED_FIELDS else scrub(v) for k, v in event.items()}
