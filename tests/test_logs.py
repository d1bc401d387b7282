"""Logging conventions: --log-level/--log-format, NO_COLOR/FORCE_COLOR, journald priorities,
figures rounded for people, and reasons that stay true at the threshold."""

from __future__ import annotations

import io
import json
import os
import re
import select
import subprocess
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from test_service_harness import HEALTHY, OFFENDER, fleet, service

from watchdog.durations import format_duration, parse_duration
from watchdog.events import EventLog
from watchdog.logs import configure_logging, for_people, is_journal, journal_priority, use_colour

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3}


@pytest.fixture(autouse=True)
def _fresh_structlog(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("NO_COLOR", "FORCE_COLOR", "JOURNAL_STREAM"):
        monkeypatch.delenv(name, raising=False)
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def _on_a_terminal(emit: Any) -> str:
    controller, terminal = os.openpty()
    try:
        with open(terminal, "w", encoding="utf-8") as tty:  # noqa: PTH123 - a pty fd
            configure_logging(stream=tty)
            emit()
            tty.flush()
            ready, _, _ = select.select([controller], [], [], 10)
            assert ready
            return os.read(controller, 65536).decode()
    finally:
        os.close(controller)


# -- colour ---------------------------------------------------------------------------------------


def test_no_color_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    text = _on_a_terminal(lambda: EventLog().watchdog_stopped("SIGTERM"))
    assert "watchdog_stopped" in text
    assert "reason=SIGTERM" in text
    assert ANSI.search(text) is None


def test_force_color_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = io.StringIO()
    configure_logging(stream=out, log_format="console")
    EventLog().watchdog_stopped("SIGTERM")
    assert ANSI.search(out.getvalue()) is not None


def test_console_off_a_terminal_has_no_colour() -> None:
    out = io.StringIO()
    configure_logging(stream=out, log_format="console")
    EventLog().watchdog_stopped("SIGTERM")
    assert "watchdog_stopped" in out.getvalue()
    assert ANSI.search(out.getvalue()) is None


@pytest.mark.parametrize(
    ("env", "tty", "expected"),
    [
        ({}, False, False),
        ({}, True, True),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # the convention: only a non-empty value counts
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": ""}, False, False),
        ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),
    ],
)
def test_colour_choice(env: dict[str, str], tty: bool, expected: bool) -> None:
    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    assert use_colour(Stream(), env) is expected


# -- figures for people ---------------------------------------------------------------------------


def test_console_rounds_figures_json_keeps_them() -> None:
    retry = 0.4721965546105178
    console, lines = io.StringIO(), io.StringIO()
    configure_logging(stream=console, log_format="console")
    EventLog().tapis_error("search_jobs", 503, "busy", retry_in_s=retry)
    EventLog().poll_completed(10, 1, 0, 3, duration_s=0.000123456)
    text = console.getvalue()
    assert "retry_in_s=0.47" in text
    assert "0.4721" not in text
    assert "duration_s=0.00012" in text
    configure_logging(stream=lines, log_format="json")
    EventLog().tapis_error("search_jobs", 503, "busy", retry_in_s=retry)
    assert json.loads(lines.getvalue())["retry_in_s"] == retry


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.4721965546105178, 0.47),
        (12.3456, 12.35),
        (0.000123456, 0.00012),
        (3.0, 3.0),
        (0.0, 0.0),
        (7, 7),
        ("0.4721965546105178", "0.4721965546105178"),
        (True, True),
    ],
)
def test_for_people(value: object, shown: object) -> None:
    assert for_people(value) == shown
    assert type(for_people(value)) is type(shown)


# -- level and format from the command line -------------------------------------------------------


def _run_once(tmp_path: Path, *args: str, stdout: Any = subprocess.PIPE, **env: str) -> Any:
    environ = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "FORCE_COLOR"}}
    environ.pop("JOURNAL_STREAM", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "watchdog", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=environ,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_log_level_and_format_before_or_after_the_command(tmp_path: Path) -> None:
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.sim.set_fault(kind="error", endpoint="search", status=500)
        config = str(svc.write_config())
        first = ("--log-level", "warning", "--log-format", "console", "run", "--once")
        before = _run_once(tmp_path, *first, "-c", config)
        after = _run_once(
            tmp_path, "run", "--once", "-c", config, "--log-format", "json", "--log-level", "debug"
        )
    text = before.stdout.decode()
    assert before.returncode == 1, before.stderr
    assert "poll_failed" in text
    assert "watchdog_started" not in text  # info is below warning
    assert not text.lstrip().startswith("{")
    events = [json.loads(line) for line in after.stdout.decode().splitlines()]
    assert after.returncode == 1, after.stderr
    assert {"watchdog_started", "poll_failed"} <= {e["event"] for e in events}


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    result = _run_once(tmp_path, "--log-level", "loud", "check", "-c", "x.yaml")
    assert result.returncode == 2
    assert "--log-level" in result.stderr.decode()


# -- journald priorities --------------------------------------------------------------------------


def _journal_run(tmp_path: Path, journal_stream: str | None, failing: str = "search") -> list[str]:
    """`run --once` against a Tapis whose `failing` endpoint answers 500, stdout into a file."""
    out_path = tmp_path / "stdout.txt"
    with service(tmp_path, fleet(OFFENDER, HEALTHY)) as svc:
        svc.sim.set_fault(kind="error", endpoint=failing, status=500)
        config = str(svc.write_config(safety={"verify_timeout": "3s", "resend_after": "1s"}))
        with out_path.open("wb") as out:
            st = os.fstat(out.fileno())
            value = journal_stream or f"{st.st_dev}:{st.st_ino}"
            args = ("run", "--once", "-c", config)
            result = _run_once(tmp_path, *args, stdout=out, JOURNAL_STREAM=value)
    # A failed poll makes --once exit 1; a failed cancel does not.
    assert result.returncode == (1 if failing == "search" else 0), result.stderr
    return out_path.read_text().splitlines()


@pytest.mark.parametrize(
    ("failing", "warnings"),
    [("search", {"poll_failed", "tapis_error"}), ("cancel", {"job_cancel_failed", "tapis_error"})],
)
def test_priority_prefixes_when_stdout_is_the_journal(
    tmp_path: Path, failing: str, warnings: set[str]
) -> None:
    lines = _journal_run(tmp_path, None, failing)
    assert lines
    levels: dict[str, set[int]] = {}
    for line in lines:
        match = re.fullmatch(r"<(\d)>(\{.*\})", line)
        assert match, line
        event = json.loads(match.group(2))
        assert int(match.group(1)) == PRIORITY[event["level"]], line
        levels.setdefault(event["event"], set()).add(int(match.group(1)))
    # `journalctl -p warning` keeps priorities 0..4: exactly the warning-level events.
    assert {name for name, prios in levels.items() if prios <= {0, 1, 2, 3, 4}} == warnings
    assert levels["watchdog_started"] == {6}


def test_no_prefixes_when_the_journal_is_another_stream(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_text("")
    st = other.stat()
    lines = _journal_run(tmp_path, f"{st.st_dev}:{st.st_ino}")
    assert lines
    assert all(line.startswith("{") for line in lines)


@pytest.mark.parametrize("value", ["", "garbage", "1:", ":2", "a:b"])
def test_is_journal_refuses_malformed_values(tmp_path: Path, value: str) -> None:
    with (tmp_path / "f").open("w") as stream:
        assert not is_journal(stream, {"JOURNAL_STREAM": value})
    assert not is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_multiline_lines_keep_their_priority_on_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        configure_logging(stream=stream, log_format="console")
        try:
            raise RuntimeError("boom")  # noqa: TRY301
        except RuntimeError:
            structlog.get_logger("x").exception("broke")
    lines = path.read_text().splitlines()
    assert len(lines) >= 3
    assert "RuntimeError: boom" in lines[-1]
    assert all(line.startswith("<3>") for line in lines)


def test_journal_priorities() -> None:
    assert [journal_priority(m) for m in ("debug", "info", "warning", "error")] == [7, 6, 4, 3]
    assert journal_priority("exception") == 3
    assert journal_priority("msg") == 6


# -- reasons stay true at the threshold -----------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "above", "text"),
    [
        (timedelta(hours=12, seconds=59), timedelta(hours=12), "12h00m59s"),
        (timedelta(hours=12, minutes=3, seconds=5), timedelta(hours=12), "12h03m"),
        (timedelta(hours=12, milliseconds=500), timedelta(hours=12), "12h00m00.5s"),
        (timedelta(days=2, seconds=30), timedelta(days=2), "2d00h00m30s"),
        (timedelta(days=2, hours=4), timedelta(days=2), "2d04h"),
        (timedelta(hours=11), timedelta(hours=12), "11h00m"),
        (timedelta(hours=12, seconds=59), None, "12h00m"),
    ],
)
def test_format_duration_above(delta: timedelta, above: timedelta | None, text: str) -> None:
    assert format_duration(delta, above=above) == text


@given(
    limit=st.integers(min_value=1, max_value=10 * 86400),
    extra=st.integers(min_value=1, max_value=3 * 86400),
)
def test_an_exceeding_duration_is_shown_exceeding(limit: int, extra: int) -> None:
    above = timedelta(seconds=limit)
    text = format_duration(above + timedelta(seconds=extra), above=above)
    assert parse_duration(text) > above


def test_a_failing_command_says_why_at_error_priority_under_the_journal(tmp_path: Path) -> None:
    err_path = tmp_path / "stderr.txt"
    with err_path.open("wb") as err:
        st = os.fstat(err.fileno())
        environ = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        result = subprocess.run(
            [sys.executable, "-m", "watchdog", "check", "-c", str(tmp_path / "missing.yaml")],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=environ,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    text = err_path.read_text()
    assert text.startswith("<3>tapis-watchdog: invalid configuration:"), text
    # Off the journal, the same line has no prefix.
    plain = subprocess.run(
        [sys.executable, "-m", "watchdog", "check", "-c", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
        timeout=60,
        check=False,
    )
    assert plain.stderr.startswith("tapis-watchdog: invalid configuration:"), plain.stderr
