"""`tapis-watchdog sim` as a subprocess: first line, tapipy against it, SIGTERM → exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tapipy.configuration import Config
from tapipy.tapis import Tapis

FLEET = """
users: {carol: carol-pw}
jobs:
  - {uuid: cli-007, status: RUNNING, owner: carol, remoteStarted: "-2h"}
"""


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "watchdog", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sim_command_serves_a_fleet_until_sigterm(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET, encoding="utf-8")
    proc = _start("--fleet", str(path))
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["tenant_id"] == "designsafe"
        assert (info["username"], info["password"]) == ("carol", "carol-pw")
        client = Tapis(
            base_url=info["base_url"],
            tenant_id=info["tenant_id"],
            username=info["username"],
            password=info["password"],
            config=Config(),
        )
        client.get_tokens()
        assert [j.uuid for j in client.jobs.getJobList()] == ["cli-007"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_sim_command_rejects_a_bad_fleet(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text("jobz: []\n", encoding="utf-8")
    proc = _start("--fleet", str(path))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "jobz: unknown key" in err


def test_sim_command_generates_jobs_and_stops_on_sigint():
    proc = _start("--jobs", "50", "--seed", "1")
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["username"] == "alice"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
