"""`tapis-watchdog test-rules` and `explain --job-file`: offline, through the daemon's own code."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from watchdog.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config.example.yaml"
EXAMPLE_CASES = ROOT / "tests" / "cases" / "example-cases.yaml"


@pytest.fixture(autouse=True)
def _identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPIS_USERNAME", "researcher")
    monkeypatch.setenv("TAPIS_PASSWORD", "not-a-real-password")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_cases_pass_against_the_example_configuration(capsys):
    code = main(["test-rules", "-c", str(EXAMPLE_CONFIG), str(EXAMPLE_CASES)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAIL" not in out
    last = out.strip().splitlines()[-1]
    passed = int(last.split()[0])
    assert passed >= 15
    assert last.endswith("0 failed")


def test_a_wrong_expectation_fails_with_expected_versus_got(tmp_path, capsys):
    cases = _write(
        tmp_path,
        "cases.yaml",
        """
        now: "2026-11-28T03:00:00Z"
        cases:
          - name: just under the budget
            job: {appId: adcirc, execSystemId: frontera, status: RUNNING, remoteStarted: "-11h59m"}
            expect: cancel
            rule: frontera-12h
          - name: over the budget
            job: {appId: adcirc, execSystemId: frontera, status: RUNNING, remoteStarted: "-13h"}
            expect: cancel
            rule: frontera-12h
        """,
    )
    code = main(["test-rules", "-c", str(EXAMPLE_CONFIG), str(cases)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  just under the budget" in out
    assert "expected: cancel by frontera-12h" in out
    assert "got:      none" in out
    assert "runtime 11h59m does not exceed 12h" in out
    assert "ok    over the budget" in out
    assert out.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_the_right_outcome_by_the_wrong_rule_fails(tmp_path, capsys):
    cases = _write(
        tmp_path,
        "cases.yaml",
        """
        now: "2026-11-28T03:00:00Z"
        cases:
          - job: {appId: adcirc, execSystemId: frontera, status: RUNNING, remoteStarted: "-13h"}
            expect: cancel
            rule: stuck-staging
        """,
    )
    assert main(["test-rules", "-c", str(EXAMPLE_CONFIG), str(cases)]) == 1
    assert "got:      cancel by frontera-12h" in capsys.readouterr().out


def test_grace_periods_follow_first_match(tmp_path, capsys):
    config = _write(
        tmp_path,
        "config.yaml",
        """
        tapis: {base_url: "https://tacc.tapis.io", tenant_id: tacc, username: u, password: p}
        rules:
          - name: long-run
            when: {runtime_over: 1h}
            grace: 30m
            action: cancel
        """,
    )
    cases = _write(
        tmp_path,
        "cases.yaml",
        """
        now: "2026-11-28T03:00:00Z"
        cases:
          - name: first match warns
            job: {status: RUNNING, remoteStarted: "-2h"}
            expect: warn
            rule: long-run
          - name: still inside the grace
            job: {status: RUNNING, remoteStarted: "-2h"}
            first_match: {long-run: "-29m"}
            expect: warn
            rule: long-run
          - name: grace over
            job: {status: RUNNING, remoteStarted: "-2h"}
            first_match: {long-run: "-30m"}
            expect: cancel
            rule: long-run
        """,
    )
    code = main(["test-rules", "-c", str(config), str(cases)])
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("cases: [", "while parsing"),
        ("- just a list", "expected a mapping with a list under 'cases'"),
        ("cases: []\nextra: 1", "extra: unknown key"),
        ("cases:\n  - {job: {status: RUNNING}, expect: maybe}", "expect: expected one of"),
        ("cases:\n  - {job: {status: RUNNING}, expect: cancel}", "rule: required"),
        (
            "cases:\n  - {job: {status: RUNNING}, expect: cancel, rule: no-such-rule}",
            "no rule named 'no-such-rule'",
        ),
        ("cases:\n  - {job: {appId: x}, expect: none}", "job.status: required"),
        (
            "cases:\n  - {job: {status: RUNNING, remoteStarted: soon}, expect: none}",
            "job.remoteStarted: expected a time",
        ),
        ("cases:\n  - {job: {status: RUNNING}, expect: none, colour: red}", "unknown key 'colour'"),
        ("cases:\n  - {expect: none}", "job: required"),
    ],
)
def test_a_malformed_case_file_exits_2_naming_the_problem(tmp_path, capsys, body, message):
    cases = _write(tmp_path, "cases.yaml", body)
    assert main(["test-rules", "-c", str(EXAMPLE_CONFIG), str(cases)]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_case_file_exits_2(tmp_path, capsys):
    assert main(["test-rules", "-c", str(EXAMPLE_CONFIG), str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_explain_reads_a_saved_job_record_without_credentials(tmp_path, capsys):
    record = {
        "result": {
            "uuid": "a3f1c2d4-0000-4000-8000-000000000001-007",
            "name": "overnight-sweep",
            "owner": "researcher",
            "appId": "opensees-mp-s3",
            "execSystemId": "frontera",
            "status": "RUNNING",
            "created": "2026-11-27T13:00:00.000Z",
            "remoteStarted": "2026-11-27T14:00:00.123456Z",
            "nodeCount": 4,
            "tags": [],
            "fileInputs": "[]",
            "parameterSet": '{"envVariables": [{"key": "_tapisJobUUID", "value": "x"}]}',
        },
        "status": "success",
    }
    job_file = _write(tmp_path, "job.json", json.dumps(record))
    code = main(
        [
            "explain",
            "-c",
            str(EXAMPLE_CONFIG),
            "--job-file",
            str(job_file),
            "--now",
            "2026-11-28T03:00:00Z",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "[MATCH] frontera-12h (cancel): runtime 12h59m exceeds 12h" in out
    assert "=> would cancel by rule frontera-12h" in out
    assert "[no] stuck-staging" in out


def test_explain_rejects_a_file_that_is_not_a_job(tmp_path, capsys):
    job_file = _write(tmp_path, "job.json", "[1, 2]")
    assert main(["explain", "-c", str(EXAMPLE_CONFIG), "--job-file", str(job_file)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_explain_says_what_the_daemon_would_do_with_a_grace_period(tmp_path, capsys):
    config = _write(
        tmp_path,
        "config.yaml",
        """
        tapis: {base_url: "https://tacc.tapis.io", tenant_id: tacc, username: u, password: p}
        rules:
          - name: soft-limit
            when: {runtime_over: 1h}
            grace: 30m
            action: cancel
          - name: hard-limit
            when: {runtime_over: 10h}
            action: cancel
        """,
    )
    records = {
        "long": {"uuid": "u-long", "status": "RUNNING", "remoteStarted": "2026-11-27T15:00:00Z"},
        "soft": {"uuid": "u-soft", "status": "RUNNING", "remoteStarted": "2026-11-28T01:00:00Z"},
    }
    args = ["explain", "-c", str(config), "--now", "2026-11-28T03:00:00Z"]
    for name, record in records.items():
        args += ["--job-file", str(_write(tmp_path, f"{name}.json", json.dumps(record)))]
    assert main(args) == 0
    out = capsys.readouterr().out
    long_part, soft_part = out.split("job u-soft")
    # A grace period that has not started does not hold back a rule that acts now.
    assert "=> would cancel by rule hard-limit" in long_part
    assert "=> would warn by rule soft-limit, and cancel after a grace of 30m" in soft_part
