from __future__ import annotations

import io
import json
import os
import re
import secrets
import select
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import structlog
from structlog.testing import capture_logs

from watchdog.errors import TapisAuthError
from watchdog.events import EVENTS, EventLog, configure_logging, redact, register_secret
from watchdog.jobs import Job
from watchdog.state.store import Silence, StateStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

JOB = Job(
    uuid="7c1d2e3f-0000-4000-8000-000000000007-007",
    status="RUNNING",
    owner="alice",
    app_id="opensees-mp",
    name="big run",
)
JOB_FIELDS = {"job_uuid", "owner", "app_id", "status", "rule", "reason", "dry_run"}
SILENCE = Silence(
    id="k3m9xq",
    created_at=datetime(2026, 3, 1, 1, 10, tzinfo=UTC),
    expires_at=datetime(2026, 3, 1, 3, 10, tzinfo=UTC),
    created_by="alice",
    reason="needs two more hours",
    uuids=(JOB.uuid,),
)
SILENCE_FIELDS = {
    *("silence_id", "by", "reason", "matches", "uuids", "owner", "app", "rule"),
    *("created_at", "expires_at"),
}
BASE_FIELDS = {"timestamp", "level", "event"}


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def a_secret() -> str:
    return "s3cr3t-" + secrets.token_hex(8)


# One row per product event: how to emit it, its level, and the fields product.md names.
CASES: list[tuple[str, str, set[str], Callable[[EventLog], None]]] = [
    (
        "watchdog_started",
        "info",
        {"version", "config_path", "rule_count", "dry_run"},
        lambda log: log.watchdog_started("0.1.0", "/etc/w.yaml", 3, dry_run=False),
    ),
    ("watchdog_stopped", "info", {"reason"}, lambda log: log.watchdog_stopped("SIGTERM")),
    (
        "config_reloaded",
        "info",
        {"config_path", "rule_count"},
        lambda log: log.config_reloaded("/etc/w.yaml", 4),
    ),
    (
        "config_reload_failed",
        "warning",
        {"config_path", "error"},
        lambda log: log.config_reload_failed("/etc/w.yaml", "rules[0].name: required"),
    ),
    (
        "poll_completed",
        "info",
        {"jobs_seen", "matches", "cancels", "api_calls", "duration_s"},
        lambda log: log.poll_completed(120, 3, 1, 4, 0.82),
    ),
    (
        "poll_failed",
        "warning",
        {"error", "api_calls", "duration_s"},
        lambda log: log.poll_failed("page 3 timed out", 3, 30.1),
    ),
    (
        "rule_matched",
        "info",
        JOB_FIELDS,
        lambda log: log.rule_matched(JOB, rule="r12h", reason="runtime 12h03m exceeds 12h"),
    ),
    (
        "job_warned",
        "warning",
        JOB_FIELDS,
        lambda log: log.job_warned(JOB, rule="r12h", reason="runtime 12h03m exceeds 12h"),
    ),
    (
        "job_cleared",
        "info",
        JOB_FIELDS,
        lambda log: log.job_cleared(JOB, rule="r12h", reason="no longer matches"),
    ),
    (
        "job_cancel_requested",
        "info",
        JOB_FIELDS,
        lambda log: log.job_cancel_requested(JOB, rule="r12h", reason="runtime"),
    ),
    (
        "job_cancel_skipped",
        "info",
        {*JOB_FIELDS, "why"},
        lambda log: log.job_cancel_skipped(JOB, rule="r12h", reason="runtime", why="exempt"),
    ),
    (
        "job_cancelled",
        "info",
        {*JOB_FIELDS, "final_status", "latency_s"},
        lambda log: log.job_cancelled(
            JOB, rule="r12h", reason="runtime", final_status="CANCELLED", latency_s=41.2
        ),
    ),
    (
        "job_cancel_unconfirmed",
        "warning",
        JOB_FIELDS,
        lambda log: log.job_cancel_unconfirmed(JOB, rule="r12h", reason="still RUNNING"),
    ),
    (
        "job_cancel_failed",
        "warning",
        {*JOB_FIELDS, "http_status", "error"},
        lambda log: log.job_cancel_failed(
            JOB, rule="r12h", reason="runtime", http_status=500, error="boom"
        ),
    ),
    (
        "circuit_opened",
        "warning",
        {"reason"},
        lambda log: log.circuit_opened("12 cancels due, 10 allowed", due=12, allowed=10),
    ),
    ("circuit_closed", "info", {"reason"}, lambda log: log.circuit_closed("within limits")),
    *(
        (
            name,
            level,
            {"budget", "usage", "limit", "unit", "reason", "dry_run"},
            lambda log, name=name: log.budget_event(
                name, budget="sweep", usage=120.0, limit=100.0, unit="node_hours", reason="r"
            ),
        )
        for name, level in (
            ("budget_warned", "warning"),
            ("budget_exceeded", "warning"),
            ("budget_recovered", "info"),
        )
    ),
    (
        "tapis_error",
        "warning",
        {"operation", "http_status", "error", "retry_in_s"},
        lambda log: log.tapis_error("getJobSearchList", 503, "unavailable", 5.0),
    ),
    (
        "silence_added",
        "info",
        SILENCE_FIELDS,
        lambda log: log.silence_added(SILENCE),
    ),
    (
        "silence_expired",
        "info",
        {*SILENCE_FIELDS, "expired_at", "ended_by"},
        lambda log: log.silence_expired(
            replace(SILENCE, ended_at=SILENCE.created_at + timedelta(hours=1), ended_by="bob")
        ),
    ),
]


def test_every_product_event_has_exactly_one_case_and_method() -> None:
    assert sorted(name for name, *_ in CASES) == sorted(EVENTS)
    assert len(set(EVENTS)) == len(EVENTS)
    for name in EVENTS:
        assert callable(getattr(EventLog, name))


@pytest.mark.parametrize(("name", "level", "fields", "emit"), CASES, ids=[c[0] for c in CASES])
def test_event_fields(
    name: str, level: str, fields: set[str], emit: Callable[[EventLog], None]
) -> None:
    configure_logging(json=True, stream=io.StringIO())
    with capture_logs() as logs:
        heard: list[dict[str, Any]] = []
        emit(EventLog(listeners=[heard.append]))
    [final] = heard
    [entry] = logs
    assert entry["event"] == name
    assert entry["level"] == level == entry["log_level"]
    assert BASE_FIELDS | fields <= set(entry)
    stamp = datetime.fromisoformat(entry["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(days=1)
    assert {k: v for k, v in entry.items() if k != "log_level"} == final
    if "job_uuid" in fields:
        assert (entry["job_uuid"], entry["owner"], entry["app_id"], entry["status"]) == (
            JOB.uuid,
            "alice",
            "opensees-mp",
            "RUNNING",
        )
        assert entry["dry_run"] is False


def test_dry_run_default_comes_from_the_log_and_can_be_overridden() -> None:
    heard: list[dict[str, Any]] = []
    log = EventLog(dry_run=True, listeners=[heard.append])
    log.rule_matched(JOB, rule="r", reason="x")
    log.rule_matched(JOB, rule="r", reason="x", dry_run=False)
    log.dry_run = False
    log.job_warned(JOB, rule="r", reason="x")
    assert [e["dry_run"] for e in heard] == [True, False, False]


def test_extra_fields_are_kept() -> None:
    heard: list[dict[str, Any]] = []
    EventLog(listeners=[heard.append]).job_cancelled(
        JOB,
        rule="r",
        reason="x",
        final_status="CANCELLED",
        latency_s=1.0,
        job_name=JOB.name,
    )
    assert heard[0]["job_name"] == "big run"


def test_exceptions_become_error_text() -> None:
    heard: list[dict[str, Any]] = []
    log = EventLog(listeners=[heard.append])
    auth = TapisAuthError("login", "bad password", http_status=401)
    log.poll_failed(TimeoutError("page 2"), 2, 1.0)
    log.tapis_error("login", 401, auth, None)
    log.poll_failed(RuntimeError(), 0, 0.0)
    log.config_reload_failed("/etc/w.yaml", "plain text")
    assert [e["error"] for e in heard] == [
        "TimeoutError: page 2",
        str(auth),
        "RuntimeError",
        "plain text",
    ]


# -- output modes ---------------------------------------------------------------------------------


def test_json_lines_on_a_stream() -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    log = EventLog()
    log.poll_completed(10, 1, 0, 2, 0.5)
    log.job_cancelled(JOB, rule="r", reason="x", final_status="CANCELLED", latency_s=3.0)
    structlog.get_logger("other").info("something_else", detail="plain")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    for obj in parsed:
        assert set(obj) >= BASE_FIELDS
        assert datetime.fromisoformat(obj["timestamp"]).utcoffset() == timedelta(0)
    assert [o["event"] for o in parsed] == ["poll_completed", "job_cancelled", "something_else"]
    assert parsed[1]["latency_s"] == 3.0
    assert parsed[1]["level"] == "info"


def test_configure_twice_and_level_filter_stdout_only(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging(stream=out, level="warning")
    configure_logging(stream=out, level="warning")
    received: list[dict[str, Any]] = []
    with StateStore.open(tmp_path / "s.db") as store:
        log = EventLog(store, listeners=[received.append])
        log.poll_completed(1, 0, 0, 1, 0.1)
        log.poll_failed("down", 1, 0.1)
        assert [e["event"] for e in store.events_since(datetime.now(UTC) - timedelta(hours=1))] == [
            "poll_completed",
            "poll_failed",
        ]
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["poll_failed"]
    assert [e["event"] for e in received] == ["poll_completed", "poll_failed"]


def test_console_rendering_when_forced() -> None:
    out = io.StringIO()
    configure_logging(json=False, stream=out)
    EventLog().poll_completed(10, 1, 0, 2, 0.5)
    text = out.getvalue()
    assert "poll_completed" in text
    assert "jobs_seen=10" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_console_rendering_on_a_terminal() -> None:
    controller, terminal = os.openpty()
    with open(terminal, "w", encoding="utf-8") as tty:  # noqa: PTH123 - a pty fd, not a path
        configure_logging(stream=tty)
        EventLog().watchdog_stopped("SIGTERM")
        tty.flush()
        ready, _, _ = select.select([controller], [], [], 10)
        assert ready
        text = os.read(controller, 65536).decode()
    os.close(controller)
    assert "\x1b[" in text
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "watchdog_stopped" in text
    assert "reason=SIGTERM" in text
    assert not text.lstrip().startswith("{")


# -- redaction ------------------------------------------------------------------------------------


def test_registered_secrets_never_reach_any_sink(tmp_path: Path) -> None:
    password, token, url_secret = a_secret(), a_secret(), "p@ss/" + a_secret()
    for value in (password, token, url_secret):
        register_secret(value)
    out = io.StringIO()
    configure_logging(stream=out)
    received: list[dict[str, Any]] = []
    with StateStore.open(tmp_path / "s.db") as store:
        log = EventLog(store, listeners=[received.append])
        with capture_logs() as logs:
            log.poll_failed(
                RuntimeError(f"login as alice with password {password} refused"),
                1,
                0.2,
                context={"headers": [f"X-Tapis-Token: {token}", {"deep": (token, 7)}]},
                raw=f"body {token}".encode(),
                url=f"mailto://alice:{quote(url_secret, safe='')}@example.org",
            )
        log.tapis_error("login", 401, f"bad password {password}", None)
        stored = store.events_since(datetime.now(UTC) - timedelta(hours=1))
    final = received[0]
    assert final["error"] == "RuntimeError: login as alice with password *** refused"
    assert final["context"] == {"headers": ["X-Tapis-Token: ***", {"deep": ["***", 7]}]}
    assert final["raw"] == "body ***"
    assert final["url"] == "mailto://alice:***@example.org"
    everything = out.getvalue() + json.dumps([logs, received, stored], default=str)
    for secret in (password, token, url_secret):
        assert secret not in everything
    assert "***" in out.getvalue()


def test_redaction_of_plain_logs_and_tracebacks() -> None:
    secret = a_secret()
    register_secret(secret)
    out = io.StringIO()
    configure_logging(stream=out)
    logger = structlog.get_logger("anything")
    try:
        raise ValueError(f"token {secret} expired")  # noqa: TRY301
    except ValueError:
        logger.exception("unexpected", note=[secret])
    assert secret not in out.getvalue()
    line = json.loads(out.getvalue())
    assert "token *** expired" in line["exception"]
    assert line["note"] == ["***"]


def test_redact_leaves_other_values_alone() -> None:
    secret = a_secret()
    register_secret(secret)
    register_secret("")
    when = datetime(2025, 1, 1, tzinfo=UTC)
    assert redact({"n": 1, "f": 2.5, "b": True, "none": None, "when": when, "s": "plain"}) == {
        "n": 1,
        "f": 2.5,
        "b": True,
        "none": None,
        "when": when,
        "s": "plain",
    }
    assert redact(ValueError(f"x {secret}")) == "x ***"


# -- sinks ----------------------------------------------------------------------------------------


def test_audit_trail_holds_the_final_event(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "s.db") as store:
        heard: list[dict[str, Any]] = []
        log = EventLog(store, listeners=[heard.append])
        log.job_warned(JOB, rule="r", reason="grace 10m started")
        log.job_cancel_skipped(JOB, rule="r", reason="x", why="dry_run", dry_run=True)
        stored = store.events_since(datetime.now(UTC) - timedelta(hours=1), job_uuid=JOB.uuid)
    assert stored == heard
    assert [e["event"] for e in stored] == ["job_warned", "job_cancel_skipped"]


def test_a_raising_listener_breaks_nothing(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("listener down")

    with StateStore.open(tmp_path / "s.db") as store:
        log = EventLog(store, listeners=[broken, received.append])
        with capture_logs() as logs:
            log.job_cancelled(JOB, rule="r", reason="x", final_status="CANCELLED", latency_s=2.0)
            log.poll_completed(1, 0, 0, 1, 0.1)
        stored = store.events_since(datetime.now(UTC) - timedelta(hours=1))
    assert [e["event"] for e in received] == ["job_cancelled", "poll_completed"]
    assert received == stored
    assert [e["event"] for e in stored] == ["job_cancelled", "poll_completed"]
    failures = [e for e in logs if e["event"] == "listener_failed"]
    assert [(f["failed_event"], f["log_level"]) for f in failures] == [
        ("job_cancelled", "error"),
        ("poll_completed", "error"),
    ]
    assert "listener down" in failures[0]["error"]
    assert "broken" in failures[0]["listener"]


def test_a_failing_store_is_logged_and_listeners_still_hear(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "s.db")
    store.close()
    received: list[dict[str, Any]] = []
    log = EventLog(store, listeners=[received.append])
    with capture_logs() as logs:
        log.watchdog_stopped("SIGTERM")
    assert [e["event"] for e in received] == ["watchdog_stopped"]
    assert [e["event"] for e in logs] == ["watchdog_stopped", "audit_write_failed"]
    assert logs[1]["log_level"] == "error"


def test_listeners_get_their_own_copy() -> None:
    seen: list[dict[str, Any]] = []

    def meddler(event: dict[str, Any]) -> None:
        event["event"] = "tampered"

    log = EventLog(listeners=[meddler, seen.append])
    log.circuit_closed("ok")
    assert seen[0]["event"] == "circuit_closed"


def test_a_closed_stdout_does_not_lose_the_event(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    out.close()
    received: list[dict[str, Any]] = []
    with StateStore.open(tmp_path / "s.db") as store:
        EventLog(store, listeners=[received.append]).watchdog_stopped("SIGTERM")
        stored = store.events_since(datetime.now(UTC) - timedelta(hours=1))
    assert [e["event"] for e in received] == [e["event"] for e in stored] == ["watchdog_stopped"]
