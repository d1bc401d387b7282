"""`tapis-watchdog demo` as a newcomer runs it: rules fire, cancels are confirmed, it ends."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest


@pytest.mark.timeout(120)
def test_demo_fires_rules_confirms_cancels_and_leaves_nothing_running():
    env = {k: v for k, v in os.environ.items() if k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC"}}
    proc = subprocess.run(
        [sys.executable, "-m", "watchdog", "demo"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = out.split("What the watchdog did:", 1)[1]
    rows = {line.split()[0]: line for line in summary.splitlines() if line[:1].isalpha()}
    for job in (
        "overnight-sweep",
        "storm-surge-ensemble",
        "blocked-on-frontera",
        "mesh-refinement",
        "wave-flume-staging",
    ):
        assert "cancelled (CANCELLED)" in rows[job], rows.get(job)
    assert "skipped: exempt" in rows["thesis-final-run"]
    assert "warned" in rows["md-long-wait"]
    assert not any(name.startswith("healthy-") for name in rows)
    assert "job_cancel_requested" in out
    assert "watchdog_stopped" in out
    # The simulated tenant went away with the demo: nothing listens on its port any more.
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)", out).group(1))
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
