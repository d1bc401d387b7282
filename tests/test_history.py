"""`history` shows what matters: hand cancels, dry-run rows, poll figures, job names."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import anyio
from test_e2e_harness import PASSWORD, TenantFactory, base_fleet, parse_lines

from watchdog.cli import main

if TYPE_CHECKING:
    import pytest

RULES = [
    {"name": "long-run", "match": {"status": "RUNNING"}, "when": {"runtime_over": "12h"},
     "action": "cancel"},
]  # fmt: skip
JOBS = [
    {"name": "over", "status": "RUNNING", "remoteStarted": "-13h", "cancel_delay": 0},
    {"name": "short", "status": "RUNNING", "remoteStarted": "-1h", "cancel_delay": 0},
]


def history(t, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    capsys.readouterr()
    assert main(["history", "-c", str(t.config_path), "--since", "1h", *extra]) == 0
    return capsys.readouterr().out


def test_a_hand_cancel_is_in_the_audit_trail(
    tenant: TenantFactory, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    monkeypatch.setenv("E2E_TAPIS_PASSWORD", PASSWORD)
    monkeypatch.setenv("SUDO_USER", "carol")
    anyio.run(partial(t.run_once))  # the daemon made the store; it cancels "over"
    short = t.uuid("short")
    assert main(["cancel", "-c", str(t.config_path), short, "--yes"]) == 0
    audit = [e for e in parse_lines(history(t, capsys, "--json")) if e.get("job_uuid") == short]
    assert [e["event"] for e in audit] == ["job_cancel_requested", "job_cancelled"]
    for event in audit:
        assert event["manual"] is True
        assert event["by"] == "carol"
        assert event["rule"] is None
        assert event["job_name"] == "short"
        assert event["dry_run"] is False
    assert audit[1]["final_status"] == "CANCELLED"
    text = history(t, capsys)
    assert f"{short} (short) rule=by hand" in text
    assert "by=carol" in text


def test_a_hand_cancel_without_a_store_says_it_is_not_recorded(
    tenant: TenantFactory, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    monkeypatch.setenv("E2E_TAPIS_PASSWORD", PASSWORD)
    assert main(["cancel", "-c", str(t.config_path), t.uuid("short"), "--yes"]) == 0
    assert "this cancel is not recorded" in capsys.readouterr().out
    assert not t.state_path.exists()


def test_dry_run_rows_are_marked_and_polls_show_their_figures(
    tenant: TenantFactory, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    monkeypatch.setenv("E2E_TAPIS_PASSWORD", PASSWORD)
    events = anyio.run(partial(t.run_once, dry_run=True))
    assert any(e["event"] == "job_cancel_skipped" and e["dry_run"] for e in events)
    lines = history(t, capsys).splitlines()
    skipped = [line for line in lines if " job_cancel_skipped " in line]
    assert skipped
    assert all("[dry run]" in line and "why=dry_run" in line for line in skipped)
    assert all("(over) rule=long-run" in line for line in skipped)
    poll = next(line for line in lines if " poll_completed " in line)
    for figure in ("jobs_seen=2", "matches=1", "cancels=0", "api_calls=", "duration_s="):
        assert figure in poll, poll
    started = next(line for line in lines if " watchdog_started " in line)
    assert "[dry run]" in started


def test_every_job_event_carries_the_job_name(
    tenant: TenantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    monkeypatch.setenv("E2E_TAPIS_PASSWORD", PASSWORD)
    events = anyio.run(partial(t.run_once))
    job_events = [e for e in events if "job_uuid" in e]
    assert {e["event"] for e in job_events} >= {"rule_matched", "job_cancel_requested",
                                                "job_cancelled"}  # fmt: skip
    assert all(e["job_name"] == "over" for e in job_events)
