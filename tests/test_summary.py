"""The summary behind the page, `report` and the digest, from a real state store file.

Events are written through the real `EventLog` into a real SQLite store; decisions through the
store's own methods, as the daemon writes them. The summary is then read back read-only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from watchdog.cli import main
from watchdog.config.model import load_config
from watchdog.events import EventLog
from watchdog.jobs import Job
from watchdog.rules.evaluate import compile_rules
from watchdog.service.render import render_html, render_summary, summary_dict
from watchdog.service.snapshot import LiveState, PollSnapshot
from watchdog.service.summary import build_summary
from watchdog.service.web import StatusPage
from watchdog.state.batch import BREAKER_META_KEY
from watchdog.state.reader import StateReader, record_last_poll
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from pathlib import Path

NOW = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
RULES: list[dict[str, Any]] = [
    {"name": "long-run", "when": {"runtime_over": "12h"}, "action": "cancel"},
    {"name": "graced", "when": {"runtime_over": "1h"}, "grace": "30m", "action": "cancel"},
    {
        "name": "shadow",
        "when": {"runtime_over": "1h"},
        "grace": "2h",
        "action": "cancel",
        "dry_run": True,
    },
]


def _job(uuid: str, name: str = "", status: str = "RUNNING") -> Job:
    return Job(uuid=uuid, status=status, name=name, owner="alice", app_id="namd")


def _at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    state = tmp_path / "state.db"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "tapis": {"base_url": "http://127.0.0.1:9", "tenant_id": "t", "access_token": "x"},
                "poll": {"interval": "60s"},
                "state": {"path": str(state)},
                "rules": RULES,
            }
        )
    )
    config = load_config(config_path)
    store = StateStore.open(state)
    log = EventLog(store)
    ok, late, refused = _job("u-ok", "<script>alert(1)</script>"), _job("u-late"), _job("u-bad")
    grace, shadow = _job("u-grace", "in grace"), _job("u-shadow")
    log.emit("info", "poll_completed", timestamp=_at(125), jobs_seen=7, matches=2, cancels=0)
    log.job_cancel_requested(ok, rule="long-run", reason="runtime 13h", timestamp=_at(120))
    log.job_cancelled(
        ok, rule="long-run", reason="runtime 13h", final_status="CANCELLED", latency_s=4.2,
        timestamp=_at(119),
    )  # fmt: skip
    log.job_cancel_requested(late, rule="long-run", reason="runtime 14h", timestamp=_at(61))
    log.job_cancel_unconfirmed(late, rule="long-run", reason="runtime 14h", timestamp=_at(45))
    log.job_cancel_failed(
        refused, rule="long-run", reason="runtime 15h", http_status=403, error="not yours",
        timestamp=_at(44),
    )  # fmt: skip
    log.job_cancel_skipped(shadow, rule="shadow", reason="r", why="dry_run", timestamp=_at(30))
    log.job_warned(grace, rule="graced", reason="runtime 1h10m exceeds 1h", timestamp=_at(10))
    hand: dict[str, Any] = {"rule": None, "reason": "by hand", "manual": True, "by": "alice"}
    log.job_cancel_requested(_job("u-hand"), **hand, timestamp=_at(5))
    log.job_cancelled(
        _job("u-hand"), final_status="CANCELLED", latency_s=3.0, timestamp=_at(4), **hand
    )
    log.job_cleared(
        _job("u-gone", status="CANCELLED"), rule="graced", reason="gone", timestamp=_at(3)
    )
    log.emit("info", "poll_completed", timestamp=_at(2), jobs_seen=5, matches=1, cancels=1)
    log.emit("warning", "poll_failed", timestamp=_at(1), error="down")
    log.emit("info", "rule_matched", timestamp=_at(1500), job_uuid="u-old", rule="long-run")
    # A live grace period (warned 10 minutes ago) and a dry-run one (first match 20 minutes ago).
    store.record_match("u-grace", "graced", NOW - timedelta(minutes=12))
    store.record_warned("u-grace", "graced", NOW - timedelta(minutes=10))
    store.record_match("u-shadow", "shadow", NOW - timedelta(minutes=20))
    record_last_poll(store, NOW - timedelta(minutes=2), {"RUNNING": 4, "QUEUED": 1})
    store.set_meta(BREAKER_META_KEY, "1")
    store.close()
    return {"config": config, "path": config_path, "state": state}


def _summary(world: dict[str, Any], since: timedelta = timedelta(hours=24)) -> Any:
    config = world["config"]
    with StateReader.open(world["state"]) as reader:
        return build_summary(reader, config, compile_rules(config.rules), now=NOW, since=since)


def test_cancels_from_request_to_outcome_with_problems_standing_out(world: dict[str, Any]) -> None:
    summary = _summary(world)
    rows = {row.job_uuid: row for row in summary.cancels}
    assert set(rows) == {"u-ok", "u-late", "u-bad"}
    assert rows["u-ok"].outcome == "cancelled"
    assert rows["u-ok"].final_status == "CANCELLED"
    assert rows["u-ok"].latency_s == 4.2
    assert rows["u-ok"].job_name == "<script>alert(1)</script>"
    assert rows["u-late"].outcome == "unconfirmed"
    assert rows["u-bad"].outcome == "failed"
    assert rows["u-bad"].error == "not yours"
    assert {row.job_uuid for row in summary.problems} == {"u-late", "u-bad"}
    # Newest first.
    assert [row.job_uuid for row in summary.cancels] == ["u-bad", "u-late", "u-ok"]


def test_grace_periods_with_their_deadlines_as_the_daemon_counts_them(
    world: dict[str, Any],
) -> None:
    grace = {row.job_uuid: row for row in _summary(world).grace}
    # A live rule's grace starts at its warning, a dry-run rule's at its first match.
    assert grace["u-grace"].deadline == NOW - timedelta(minutes=10) + timedelta(minutes=30)
    assert grace["u-grace"].reason == "runtime 1h10m exceeds 1h"
    assert grace["u-grace"].job_name == "in grace"
    assert grace["u-shadow"].deadline == NOW - timedelta(minutes=20) + timedelta(hours=2)
    assert grace["u-shadow"].dry_run is True


def test_health_hand_cancels_skips_warnings_and_counts(world: dict[str, Any]) -> None:
    summary = _summary(world)
    health = summary.health
    assert health.last_good_poll == NOW - timedelta(minutes=2)
    assert health.next_poll == NOW - timedelta(minutes=1)
    assert health.failures_since == 1
    assert health.healthy is True
    assert health.breaker_open is True
    assert health.live is False
    assert summary.jobs_by_status == {"QUEUED": 1, "RUNNING": 4}
    hand = {row.job_uuid: row for row in summary.hand_cancels}
    assert hand["u-hand"].by == "alice (tapis-watchdog cancel)"
    assert hand["u-hand"].final_status == "CANCELLED"
    assert hand["u-gone"].by == "outside the watchdog"
    assert [(k.job_uuid, k.why) for k in summary.skipped] == [("u-shadow", "dry_run")]
    assert [w.job_uuid for w in summary.warnings] == ["u-grace"]
    # The event older than 24 hours is outside the window, and outside the counts.
    assert "rule_matched" not in summary.counts
    assert summary.counts["job_cancel_requested"] == 3
    assert summary.counts["poll_completed"] == 2
    assert summary.eventful is True


def test_the_window_narrows_the_lists_not_the_timeline(world: dict[str, Any]) -> None:
    summary = _summary(world, since=timedelta(minutes=50))
    assert {row.job_uuid for row in summary.cancels} == {"u-late", "u-bad"}
    assert len(summary.timeline) == 24
    assert summary.timeline[-1].start == NOW.replace(minute=0)
    last_hours = {t.start.hour: t for t in summary.timeline}
    assert last_hours[5].cancels == 1
    assert last_hours[5].jobs_watched == 7
    assert last_hours[6].cancels == 1
    assert last_hours[7].cancels == 1  # the hand cancel
    assert last_hours[7].jobs_watched == 5


def test_every_format_and_escaping(world: dict[str, Any]) -> None:
    summary = _summary(world)
    html = render_html(summary, refresh_s=30)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "<svg" in html
    text = render_summary(summary, "text")
    assert "!! u-late" in text
    assert "<script>alert(1)</script>" in text
    offline = render_summary(summary, "html")
    assert 'href="/' not in offline  # a file has no listener to link to
    assert "<meta http-equiv" not in offline
    markdown = render_summary(summary, "markdown")
    assert markdown.startswith("# tapis-watchdog report")
    data = json.loads(render_summary(summary, "json"))
    assert data["problems"] == 2
    assert [row["job_uuid"] for row in data["cancels"]] == ["u-bad", "u-late", "u-ok"]
    assert data["counts"] == summary_dict(summary)["counts"]


def test_report_command_reads_the_store_offline(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "-c", str(world["path"]), "--format", "json", "--since", "30d"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {row["job_uuid"] for row in data["cancels"]} == {"u-ok", "u-late", "u-bad"}
    assert main(["report", "-c", str(world["path"]), "--since", "soon"]) == 2


def test_report_needs_no_credentials(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPORT_TEST_PASSWORD", raising=False)
    path = world["path"]
    data = yaml.safe_load(path.read_text())
    data["tapis"] = {
        "base_url": "https://tapis.example.org",
        "tenant_id": "t",
        "username": "alice",
        "password": "${REPORT_TEST_PASSWORD}",
    }
    path.write_text(yaml.safe_dump(data))
    assert main(["report", "-c", str(path), "--format", "markdown", "--since", "30d"]) == 0
    assert "## Cancels: 3 (2 need a look)" in capsys.readouterr().out


def test_report_without_a_store_creates_none(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    world["state"].unlink()
    assert main(["report", "-c", str(world["path"])]) == 1
    assert "no state store" in capsys.readouterr().err
    assert not world["state"].exists()


def test_page_routes_answer_without_tapis(world: dict[str, Any]) -> None:
    config = world["config"]
    rules = compile_rules(config.rules)
    job = Job(
        uuid="u-grace",
        status="RUNNING",
        name="in grace",
        remote_started=NOW - timedelta(hours=1, minutes=10),
    )
    snapshot = PollSnapshot(at=NOW, jobs=(job,), rules=rules)
    live = LiveState(
        config=config, rules=rules, dry_run=False, snapshot=snapshot, next_poll_at=None
    )
    page = StatusPage(world["state"], live=lambda: live, clock=lambda: NOW)
    home = page.respond("/")
    assert home.status == 200
    assert home.content_type.startswith("text/html")
    summary = json.loads(page.respond("/api/summary?since=1h").body)
    assert summary["health"]["live"] is True
    assert summary["jobs_by_status"] == {"RUNNING": 1}
    view = json.loads(page.respond("/api/jobs/u-grace").body)
    verdicts = {v["rule"]: v for v in view["verdicts"]}
    assert verdicts["graced"]["matched"] is True
    assert verdicts["long-run"]["matched"] is False
    assert view["conclusion"].startswith("grace period of rule graced running: cancel at")
    assert view["silences"] == []
    with StateStore.open(world["state"]) as store:
        silence = store.add_silence(
            created_at=NOW - timedelta(minutes=1),
            expires_at=NOW + timedelta(hours=6),
            created_by="alice",
            reason="thesis run",
            uuids=["u-grace"],
        )
    view = json.loads(page.respond("/api/jobs/u-grace").body)
    until = f"{NOW + timedelta(hours=6):%Y-%m-%dT%H:%M:%SZ}"
    spared = (
        f"silence {silence.id} spares it from every cancel until {until} (by alice: thesis run)"
    )
    assert view["silences"] == [spared]
    assert "silenced until" in view["conclusion"]
    assert view["explain"][-2] == f"  {view['silences'][0]}"
    assert f"silence {silence.id} spares it" in page.respond("/jobs/u-grace").body.decode()
    assert page.respond("/jobs/u-ok").status == 200  # known to the store, not in the last poll
    assert page.respond("/api/jobs/u-nobody").status == 404
    assert page.respond("/nothing").status == 404
    assert page.respond("/api/summary?since=forever").status == 400


def test_the_page_is_read_only_over_wsgi(world: dict[str, Any]) -> None:
    from wsgiref.util import setup_testing_defaults  # noqa: PLC0415

    config = world["config"]
    rules = compile_rules(config.rules)
    live = LiveState(config=config, rules=rules, dry_run=True, snapshot=None, next_poll_at=None)
    page = StatusPage(world["state"], live=lambda: live, clock=lambda: NOW)
    answers: list[tuple[str, list[tuple[str, str]]]] = []

    def call(method: str, path: str, query: str = "") -> bytes:
        environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
        environ["QUERY_STRING"] = query
        setup_testing_defaults(environ)
        return b"".join(page(environ, lambda status, headers: answers.append((status, headers))))

    assert b"dry run" in call("GET", "/", "since=2h")
    status, headers = answers[-1]
    assert status == "200 OK"
    assert ("Cache-Control", "no-store") in headers
    call("POST", "/api/summary")
    assert answers[-1][0] == "405 Method Not Allowed"
    assert ("Allow", "GET, HEAD") in answers[-1][1]
    call("GET", "/jobs/u-ok")
    assert answers[-1][0] == "200 OK"


def test_long_lists_show_their_newest_rows_and_say_how_many_more(world: dict[str, Any]) -> None:
    with StateStore.open(world["state"]) as store:
        log = EventLog(store)
        for index in range(60):
            job = _job(f"u-dry-{index:02d}")
            log.job_cancel_skipped(
                job, rule="long-run", reason="r", why="dry_run", timestamp=_at(1)
            )
    summary = _summary(world)
    assert len(summary.skipped) == 61
    html = render_html(summary)
    assert html.count("<code>dry_run</code>") == 50
    assert "and 11 more:" in html
    assert len(json.loads(render_summary(summary, "json"))["skipped"]) == 61
