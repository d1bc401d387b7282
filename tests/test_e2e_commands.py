"""End to end: the commands `check`, `explain`, `cancel`, `history` and `run`'s exit codes.

`check`, `explain`, `cancel` and `history` run in this process through `watchdog.cli.main`
(their output captured); `run` with a wrong password runs as a real subprocess.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from test_e2e_harness import (
    PASSWORD,
    TenantFactory,
    base_fleet,
    parse_lines,
)

from watchdog.cli import main

REPO = Path(__file__).resolve().parent.parent
RULES: list[dict[str, Any]] = [
    {
        "name": "long-run",
        "match": {"status": "RUNNING"},
        "when": {"runtime_over": "12h"},
        "action": "cancel",
    },
    {
        "name": "bad-inputs",
        "when": {"input_matches": {"pattern": r"\.tmp$", "in": ["file_inputs"]}},
        "action": "cancel",
    },
    {"name": "tell-me", "when": {"age_over": "1h"}, "action": "warn"},
]
JOBS: list[dict[str, Any]] = [
    {
        "name": "over",
        "status": "RUNNING",
        "remoteStarted": "-13h",
        "created": "-14h",
        "cancel_delay": 0,
    },
    {"name": "short", "status": "RUNNING", "remoteStarted": "-1h", "created": "-90m"},
    {"name": "done", "status": "FINISHED", "remoteStarted": "-5h", "ended": "-1h"},
]
UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000-007"


@pytest.fixture(autouse=True)
def password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_TAPIS_PASSWORD", PASSWORD)


# -- check ----------------------------------------------------------------------------------------


def test_check_accepts_the_example_and_prints_every_rule(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAPIS_USERNAME", "alice")
    monkeypatch.setenv("TAPIS_PASSWORD", "example-secret-value")
    example = REPO / "config.example.yaml"
    assert main(["check", "-c", str(example)]) == 0
    out = capsys.readouterr().out
    names = [rule["name"] for rule in yaml.safe_load(example.read_text(encoding="utf-8"))["rules"]]
    assert names
    for name in names:
        assert name in out
    assert "example-secret-value" not in out


def test_check_names_the_key_paths_of_a_broken_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = {
        "tapis": {"base_url": "https://designsafe.tapis.io", "tenant_id": "designsafe"},
        "poll": {"interval": "soon"},
        "rules": [
            {
                "name": "frontera-12h",
                "when": {"runtime_over": "twelve hours"},
                "action": "cancel",
            }
        ],
        "surprise": 1,
    }
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "poll.interval" in err
    assert "rules[0]" in err
    assert "runtime_over" in err
    assert "twelve hours" in err
    assert "surprise" in err


# -- explain --------------------------------------------------------------------------------------


def test_explain_shows_each_rules_verdict_and_acts_on_nothing(
    tenant: TenantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    over, short = t.uuid("over"), t.uuid("short")
    # One job Tapis does not know: every other job is still explained, and the exit says so.
    assert main(["explain", "-c", str(t.config_path), over, short, UNKNOWN_UUID]) == 4
    captured = capsys.readouterr()
    out = captured.out
    sections = out.split("job ")
    over_text = next(s for s in sections if s.startswith(over))
    short_text = next(s for s in sections if s.startswith(short))
    assert "[MATCH] long-run" in over_text
    assert "exceeds 12h" in over_text
    assert "[no] bad-inputs" in over_text
    assert "would cancel by rule long-run" in over_text
    assert "[no] long-run" in short_text
    assert "no cancel" in short_text
    for rule in RULES:
        assert f"{rule['name']} ({rule['action']})" in over_text
    assert f"job {UNKNOWN_UUID}: Tapis does not know this job" in captured.err
    assert t.posts("cancel") == []
    assert t.posts("sendEvent") == []
    assert not t.state_path.exists()


def test_explain_job_file_works_offline(tenant: TenantFactory, tmp_path: Path) -> None:
    t = tenant(base_fleet(JOBS))
    record = t.sim.job(t.uuid("over"))
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"result": record, "status": "success"}), encoding="utf-8")
    # Nothing listens on the configured Tapis: explain --job-file must not need it.
    config = {
        "tapis": {
            "base_url": "http://127.0.0.1:9",
            "tenant_id": "designsafe",
            "username": "alice",
            "password": "unused",
        },
        "rules": RULES,
    }
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    t.sim.clear_requests()
    done = t.command("explain", "-c", str(path), "--job-file", str(job_file))
    assert done.returncode == 0, done.stderr
    assert "[MATCH] long-run" in done.stdout
    assert "would cancel by rule long-run" in done.stdout
    assert t.sim.requests == []


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_follows_the_job_until_it_is_cancelled(
    tenant: TenantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    over = t.uuid("over")
    assert main(["cancel", "-c", str(t.config_path), over, "--yes"]) == 0
    assert f"job {over} is CANCELLED" in capsys.readouterr().out
    assert t.posts("cancel") == [over]
    assert t.sim.job(over)["status"] == "CANCELLED"


@pytest.mark.parametrize(("which", "code"), [("terminal", 1), ("unknown", 4)])
def test_cancel_refuses_terminal_and_unknown_jobs_without_a_cancel(
    tenant: TenantFactory, capsys: pytest.CaptureFixture[str], which: str, code: int
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    uuid = t.uuid("done") if which == "terminal" else UNKNOWN_UUID
    assert main(["cancel", "-c", str(t.config_path), uuid, "--yes"]) == code
    err = capsys.readouterr().err
    assert uuid in err
    assert t.posts("cancel") == []


# -- history and run ------------------------------------------------------------------------------


def test_history_shows_the_audit_trail_of_a_run(
    tenant: TenantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    over = t.uuid("over")
    events = anyio.run(partial(t.run_once))
    capsys.readouterr()

    assert main(["history", "-c", str(t.config_path), "--since", "1h", "--json"]) == 0
    audit = parse_lines(capsys.readouterr().out)
    assert [e["event"] for e in audit] == [e["event"] for e in events]
    cancelled = [e for e in audit if e["event"] == "job_cancelled"]
    assert [e["job_uuid"] for e in cancelled] == [over]
    assert cancelled[0]["final_status"] == "CANCELLED"

    assert main(["history", "-c", str(t.config_path), "--since", "1h"]) == 0
    text = capsys.readouterr().out
    assert f"{over} (over) rule=long-run" in text
    assert "final_status=CANCELLED" in text
    assert f"{len(events)} events since" in text


def test_history_without_a_state_store_says_so_and_creates_nothing(
    tenant: TenantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    assert not t.state_path.exists()
    assert main(["history", "-c", str(t.config_path)]) == 1
    assert "no state store at" in capsys.readouterr().err
    assert not t.state_path.exists()
    assert not t.state_path.parent.exists() or not any(t.state_path.parent.iterdir())


def test_run_with_a_wrong_password_exits_3(tenant: TenantFactory) -> None:
    t = tenant(base_fleet(JOBS))
    t.write_config(RULES)
    done = t.command("run", "-c", str(t.config_path), "--once", password="not-the-password")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "authenticate" in done.stderr
    assert t.posts("cancel") == []
    assert "not-the-password" not in done.stdout + done.stderr
