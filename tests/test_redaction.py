"""Scrubbing takes secrets out of outside text and never touches what the daemon writes itself."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import structlog
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_service_harness import HEALTHY, config_text, fleet, service

from watchdog.errors import TapisAuthError, TapisUnavailableError
from watchdog.events import EventLog, configure_logging
from watchdog.jobs import Job
from watchdog.redaction import (
    LONG_SECRET,
    PROTECTED_FIELDS,
    REDACTED,
    clear_secrets,
    register_basic_credentials,
    register_secret,
    scrub_event,
    scrub_text,
)
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

JOB = Job(uuid="0a1b2c3d-aaaa-4000-8000-00000000000a-007", status="RUNNING", owner="alice")


@pytest.fixture(autouse=True)
def _no_secrets() -> Iterator[None]:
    # Weak secrets registered here must not scrub the other tests' events.
    clear_secrets()
    structlog.reset_defaults()
    yield
    clear_secrets()
    structlog.reset_defaults()


def _every_sink(tmp_path: Path, emit: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Emit through a real EventLog; the JSON line on stdout, the stored row, the listener's."""
    out = io.StringIO()
    configure_logging(stream=out, log_format="json")
    heard: list[dict[str, Any]] = []
    with StateStore.open(tmp_path / "s.db") as store:
        emit(EventLog(store, listeners=[heard.append]))
        stored = store.events_since(datetime.now(UTC) - timedelta(hours=1))
    return json.loads(out.getvalue().splitlines()[-1]), stored[-1], heard[-1]


def test_a_one_letter_password_leaves_names_and_levels_alone(tmp_path: Path) -> None:
    register_secret("a")
    sinks = _every_sink(
        tmp_path,
        lambda log: (
            log.watchdog_started("0.1.0", "/etc/tapis-watchdog/a.yaml", 2, dry_run=False),
            log.job_warned(JOB, rule="a", reason="runtime 12h03m exceeds 12h"),
        ),
    )
    for event in sinks:
        assert event["event"] == "job_warned"
        assert event["level"] == "warning"
        assert event["job_uuid"] == JOB.uuid
        assert event["rule"] == "a"
        assert event["reason"] == "runtime 12h03m exceeds 12h"


def test_a_common_word_password_does_not_give_itself_away(tmp_path: Path) -> None:
    register_secret("login")
    error = TapisAuthError("login", "Invalid login credentials", http_status=401)
    sinks = _every_sink(tmp_path, lambda log: log.tapis_error("login", 401, error, None))
    for event in sinks:
        assert event["operation"] == "login"
        assert event["error"] == "login failed (HTTP 401): Invalid login credentials"
    # Where it stands alone, or in a credential's place, it is still removed.
    assert scrub_text("login") == REDACTED
    assert (
        scrub_text("https://alice:login@tapis.example/v3") == "https://alice:***@tapis.example/v3"
    )


def test_long_secrets_are_removed_anywhere_in_outside_text(tmp_path: Path) -> None:
    password = "correct-horse-battery"
    register_secret(password)
    error = TapisUnavailableError("search_jobs", f"echo: {password}x and {quote(password)}")
    sinks = _every_sink(
        tmp_path,
        lambda log: log.poll_failed(error, 1, 0.2, detail={"nested": [password]}),
    )
    for event in sinks:
        assert password not in json.dumps(event)
        assert event["error"] == "search_jobs failed: echo: ***x and ***"
        assert event["detail"] == {"nested": [REDACTED]}


def test_basic_credentials_and_authorization_headers() -> None:
    register_basic_credentials("watchdog-client", "k3y")
    basic = base64.b64encode(b"watchdog-client:k3y").decode()
    assert scrub_text(f"sent {basic} to the tokens service") == "sent *** to the tokens service"
    assert scrub_text(f"Authorization: Basic {basic}\r\nHost: x") == "Authorization: ***\r\nHost: x"
    assert scrub_text("{'Authorization': 'Bearer abc.def'}") == "{'Authorization': '***'}"
    assert scrub_text('{"X-Tapis-Token": "not-a-jwt"}') == '{"X-Tapis-Token": "***"}'
    # Unregistered tokens too: any JWT is a credential.
    assert scrub_text("token eyJhbGciOi.eyJzdWIiOi.c2ln expired") == "token *** expired"


def test_credential_shapes_without_registration() -> None:
    assert scrub_text("GET /v3/x?password=pw&limit=1") == "GET /v3/x?password=***&limit=1"
    assert scrub_text('{"client_key": "k", "n": 1}') == '{"client_key": "***", "n": 1}'
    assert scrub_text("mailto://u:pw@mail.example") == "mailto://u:***@mail.example"
    # The daemon's own words that merely name a key stay readable.
    assert scrub_text("tapis.password: is required with username") == (
        "tapis.password: is required with username"
    )


def test_protected_fields_are_never_scrubbed() -> None:
    for field in PROTECTED_FIELDS:
        register_secret(field)
    event = {field: field for field in PROTECTED_FIELDS} | {"free": "timestamp"}
    assert scrub_event(event) == {field: field for field in PROTECTED_FIELDS} | {"free": REDACTED}


PASSWORDS = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=24
).filter(lambda p: p.strip() != "")


@settings(max_examples=200, deadline=None)
@given(password=PASSWORDS)
def test_any_password_in_a_credential_place_is_removed(password: str) -> None:
    clear_secrets()
    register_secret(password)
    register_basic_credentials("cid", password)
    basic = base64.b64encode(f"cid:{password}".encode()).decode()
    encoded = quote(password, safe="")
    cases = {
        f"https://alice:{encoded}@tapis.example/v3/oauth2/tokens": (
            "https://alice:***@tapis.example/v3/oauth2/tokens"
        ),
        f"Authorization: Basic {basic}": "Authorization: ***",
        json.dumps({"username": "alice", "password": password}): (
            '{"username": "alice", "password": "***"}'
        ),
        repr({"password": password, "n": 1}): "{'password': '***', 'n': 1}",
        f"grant_type=password&password={encoded}&x=1": "grant_type=password&password=***&x=1",
        password: REDACTED,
        basic: REDACTED,
    }
    for text, expected in cases.items():
        if repr({"password": password}).startswith("{'password': \"") and "'n'" in expected:
            continue  # Python quotes a value holding ' with ": the JSON form covers it
        assert scrub_text(text) == expected, text


@settings(max_examples=150, deadline=None)
@given(password=PASSWORDS)
def test_any_password_leaves_the_daemons_own_values_alone(password: str) -> None:
    clear_secrets()
    register_secret(password)
    event = {
        "timestamp": "2026-12-02T03:00:00Z",
        "level": "warning",
        "event": "job_cancel_failed",
        "operation": "cancel_job",
        "job_uuid": JOB.uuid,
        "rule": "frontera-12h",
        "status": "RUNNING",
        "http_status": 500,
        "dry_run": False,
        "latency_s": 1.5,
    }
    assert scrub_event(event) == event


@settings(max_examples=150, deadline=None)
@given(password=PASSWORDS, before=st.text(max_size=20), after=st.text(max_size=20))
def test_a_long_password_never_survives_in_outside_text(
    password: str, before: str, after: str
) -> None:
    clear_secrets()
    register_secret(password)
    clean = scrub_text(before + password + after)
    if len(password) >= LONG_SECRET:
        assert password not in clean


def test_a_login_error_echoing_headers_leaks_nothing_anywhere(tmp_path: Path) -> None:
    """A tokens answer that echoes the request's headers: the OAuth client's Basic value and the
    client key reach neither stdout, stderr, the state store nor `history --json`."""
    client_id, client_key = "watchdog-client", "ck-7f3e9a1c5b2d"
    basic = base64.b64encode(f"{client_id}:{client_key}".encode()).decode()
    echo = f"upstream said no; request headers: Authorization: Basic {basic}; key={client_key}"
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.sim.set_fault(kind="error", endpoint="tokens", status=503, message=echo)
        text = yaml.safe_load(config_text(svc.base_url, tmp_path))
        text["tapis"].update(client_id=client_id, client_key=client_key)
        config = svc.write_config(yaml.safe_dump(text))
        run = _cli(tmp_path, "run", "--once", "-c", str(config))
    history = _cli(tmp_path, "history", "--json", "-c", str(config))
    assert run.returncode != 0
    assert history.returncode == 0, history.stderr
    events = [json.loads(line) for line in history.stdout.splitlines()]
    assert "tapis_error" in {e["event"] for e in events}
    everything = run.stdout + run.stderr + history.stdout + history.stderr
    assert "upstream said no" in everything
    assert basic not in everything
    assert client_key not in everything


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("password", ["a", "login"])
def test_weak_passwords_leave_stdout_and_history_readable(tmp_path: Path, password: str) -> None:
    """The reproduction: a real `run --once` with the password `a` or `login`, then `history`.

    The first poll's login fails once (503), so a `tapis_error` with operation `login` is
    logged; the retry logs in and the poll completes."""
    with service(tmp_path, {**fleet(HEALTHY), "users": {"alice": password}}) as svc:
        svc.sim.set_fault(kind="error", endpoint="tokens", status=503, count=1)
        text = yaml.safe_load(config_text(svc.base_url, tmp_path))
        text["tapis"]["password"] = password
        config = svc.write_config(yaml.safe_dump(text))
        run = _cli(tmp_path, "run", "--once", "-c", str(config))
    history = _cli(tmp_path, "history", "--json", "-c", str(config))
    assert run.returncode == 0, run.stderr
    stdout = [json.loads(line) for line in run.stdout.splitlines()]
    stored = [json.loads(line) for line in history.stdout.splitlines()]
    for events in (stdout, stored):
        names = [e["event"] for e in events]
        assert "watchdog_started" in names
        assert "poll_completed" in names
        errors = [e for e in events if e["event"] == "tapis_error"]
        assert errors, names
        assert {e["operation"] for e in errors} == {"login"}
        assert {e["level"] for e in errors} == {"warning"}
        assert all(REDACTED not in json.dumps(e) for e in events), events
