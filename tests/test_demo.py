"""`tapis-watchdog demo` as a newcomer runs it: rules fire, cancels are confirmed, it ends.

The demo takes about 30 seconds, so it runs once in the suite: from the wheel installed with pipx
in an empty directory (`test_packaging.py`), the way a newcomer meets it; this module holds what
its output must show.
"""

from __future__ import annotations

import re
import socket

import pytest

CANCELLED = (
    "overnight-sweep",
    "storm-surge-ensemble",
    "blocked-on-frontera",
    "mesh-refinement",
    "wave-flume-staging",
)


def assert_demo_output(out: str) -> None:
    """The demo fired its rules, confirmed its cancels, and left nothing running."""
    summary = out.split("What the watchdog did:", 1)[1]
    rows = {line.split()[0]: line for line in summary.splitlines() if line[:1].isalpha()}
    for job in CANCELLED:
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
