"""Silences against the running daemon: picked up at the next poll without a reload, kept across
a reload, counted in the metrics, shown on the status page until they end, and ended by hand so
the held-back cancel happens at once.

The daemon is a real subprocess polling every second (`test_service_harness`); silences are
added and expired with the real command, as an operator would while it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from test_service_harness import HEALTHY, fleet, http_get, service, wait_until

from watchdog.jobs import format_timestamp

if TYPE_CHECKING:
    from pathlib import Path


def _silence(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the caller checks
        [sys.executable, "-m", "watchdog", "silence", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        cwd=config.parent,
    )


def _gauge(body: str, name: str) -> float | None:
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _page_silences(url: str) -> list[tuple[str, bool, str]]:
    status, body = http_get(f"{url}/api/summary")
    assert status == 200, body
    return [(x["id"], x["active"], x["reason"]) for x in json.loads(body)["silences"]]


def test_a_running_daemon_applies_a_silence_at_its_next_poll_and_keeps_it(
    tmp_path: Path,
) -> None:
    with service(tmp_path, fleet(HEALTHY)) as svc:
        config = svc.write_config(metrics={"listen": "127.0.0.1:0"})
        daemon = svc.start()
        _, started = daemon.wait_event("watchdog_started")
        daemon.wait_event("poll_completed")
        job = svc.sim.add_job({**HEALTHY, "remoteStarted": "-11h"})

        added = _silence(config, "add", job, "--for", "1h", "--reason", "keep it", "--json")
        assert added.returncode == 0, added.stderr
        silence_id = json.loads(added.stdout)["silence_id"]
        # The next poll counts it; no reload was needed.
        daemon.wait_event("poll_completed", silences_active=1)
        late = format_timestamp(datetime.now(UTC) - timedelta(hours=13))
        created = format_timestamp(datetime.now(UTC) - timedelta(hours=14))
        svc.sim.update_job(job, created=created, remoteStarted=late)
        skipped_at, skipped = daemon.wait_event("job_cancel_skipped", job_uuid=job)
        assert (skipped["why"], skipped["silence_id"]) == ("silenced", silence_id)

        url = started["metrics_url"]
        status, body = http_get(f"{url}/metrics")
        assert status == 200
        assert _gauge(body, "tapis_watchdog_silences_active") == 1
        # The status page shows it while it is in force.
        assert _page_silences(url) == [(silence_id, True, "keep it")]
        status, page = http_get(f"{url}/")
        assert status == 200
        assert "Silences in force: 1" in page
        assert silence_id in page
        status, body = http_get(f"{url}/api/jobs/{job}")
        assert status == 200, body
        view = json.loads(body)
        assert f"but silence {silence_id}" in view["conclusion"]
        assert any(f"silence {silence_id} spares it" in line for line in view["explain"])

        # A reload keeps it: the job is still spared, polls after the reload send no cancel.
        daemon.send(signal.SIGHUP)
        reloaded, _ = daemon.wait_event("config_reloaded", after=skipped_at)
        daemon.wait_polls(2, after=reloaded)
        assert svc.cancel_posts(job) == 0

        # Ended by hand: the held-back cancel happens at the next poll.
        ended = _silence(config, "expire", silence_id, "--by", "night-operator")
        assert ended.returncode == 0, ended.stderr
        requested, event = daemon.wait_event("job_cancel_requested", job_uuid=job)
        assert f"silence {silence_id} spared it and is over" in event["reason"]
        daemon.wait_event("job_cancelled", job_uuid=job, after=requested)
        daemon.wait_event("poll_completed", silences_active=0, after=requested)
        wait_until(lambda: svc.cancel_posts(job) == 1, "one cancel")
        # Ended: the page says so, and counts none in force.
        assert _page_silences(url) == [(silence_id, False, "keep it")]
        assert "Silences in force: 0" in http_get(f"{url}/")[1]
        assert daemon.stop() == 0
        assert len(daemon.named("job_cancel_skipped", job_uuid=job)) == 1
