"""The daemon as a systemd service: sd_notify, signals, reload, metrics, against a fresh simulator.

Each test starts the real daemon as a subprocess (see `test_service_harness`), with
`NOTIFY_SOCKET` bound by the test and `WATCHDOG_USEC` at two seconds, and talks to it the way
systemd and an operator do: signals, a rewritten configuration file, HTTP scrapes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from test_service_harness import (
    HEALTHY,
    OFFENDER,
    RUNTIME_RULE,
    fleet,
    http_get,
    listening_sockets,
    service,
)

from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from pathlib import Path


def _metrics_value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_runs_as_systemd_would(tmp_path: Path) -> None:
    """READY after a real login and poll, steady WATCHDOG pings, STATUS, metrics, clean stop."""
    with service(tmp_path, fleet(OFFENDER, HEALTHY)) as svc:
        offender, healthy = svc.sim.uuids()
        svc.write_config(metrics={"listen": "127.0.0.1:0"})
        daemon = svc.start()

        messages = daemon.notify.wait_for(lambda ms: any("READY" in m for m in ms), "READY=1")
        # READY=1 comes only once Tapis answered a login and a whole search.
        endpoints = {(r.endpoint, r.status) for r in svc.sim.requests}
        assert ("tokens", 201) in endpoints
        assert ("search", 200) in endpoints
        ready = next(m for m in messages if "READY" in m)
        assert ready["READY"] == "1"
        assert "watching 2 jobs" in ready["STATUS"]

        _, started = daemon.wait_event("watchdog_started")
        assert started["rule_count"] == 1
        daemon.wait_event("job_cancelled", job_uuid=offender)
        daemon.notify.wait_for(lambda ms: sum("WATCHDOG" in m for m in ms) >= 4, "WATCHDOG=1 x4")
        assert all(m["WATCHDOG"] == "1" for m in daemon.notify.messages if "WATCHDOG" in m)
        statuses = [m["STATUS"] for m in daemon.notify.messages if "STATUS" in m]
        assert all("\n" not in s and s.startswith("watching ") for s in statuses)
        daemon.notify.wait_for(
            lambda ms: any("1 cancels today" in m.get("STATUS", "") for m in ms),
            "STATUS with the cancel",
        )

        # /metrics and /healthz, on the configured address and nowhere else.
        url = started["metrics_url"]
        status, body = http_get(f"{url}/healthz")
        assert status == 200, body
        status, body = http_get(f"{url}/metrics")
        assert status == 200
        assert (_metrics_value(body, 'tapis_watchdog_polls_total{outcome="ok"}') or 0) >= 1
        assert _metrics_value(body, "tapis_watchdog_jobs_watched") is not None
        assert 'tapis_watchdog_cancels_total{outcome="cancelled",rule="frontera-12h"}' in body
        port = int(url.rsplit(":", 1)[1])
        assert listening_sockets(daemon.proc.pid) == [("127.0.0.1", port)]

        code = daemon.stop(signal.SIGTERM)
        assert code == 0
        _, stopped = daemon.wait_event("watchdog_stopped")
        assert stopped["reason"] == "received SIGTERM"
        assert daemon.notify.count("STOPPING") >= 1
        assert svc.cancel_posts(offender) == 1
        assert svc.cancel_posts(healthy) == 0
        assert daemon.other_lines == []


def test_nothing_listens_without_metrics(tmp_path: Path) -> None:
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.write_config()
        daemon = svc.start()
        daemon.wait_event("poll_completed")
        assert listening_sockets(daemon.proc.pid) == []
        assert daemon.stop(signal.SIGINT) == 0
        _, stopped = daemon.wait_event("watchdog_stopped")
        assert stopped["reason"] == "received SIGINT"


def test_sighup_reload_keeps_the_old_configuration_on_error(tmp_path: Path) -> None:
    """A broken file: config_reload_failed, old rules stay; a fixed file: config_reloaded."""
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.write_config()
        daemon = svc.start()
        daemon.notify.wait_for(lambda ms: any("READY" in m for m in ms), "READY=1")

        svc.config_path.write_text(svc.config_path.read_text() + "\nbogus_key: 1\n")
        mark = daemon.position
        daemon.send(signal.SIGHUP)
        _, failed = daemon.wait_event("config_reload_failed", after=mark)
        assert "bogus_key" in failed["error"]
        reloads = daemon.notify.wait_for(
            lambda ms: any("RELOADING" in m for m in ms), "RELOADING=1"
        )
        after = reloads[next(i for i, m in enumerate(reloads) if "RELOADING" in m) :]
        daemon.notify.wait_for(
            lambda ms: sum("READY" in m for m in ms) >= 2, "READY=1 after the reload"
        )
        assert "MONOTONIC_USEC" in after[0]
        # Still polling with the old rule: an offender that appears now is cancelled.
        index = daemon.wait_polls(1, after=mark)
        offender = svc.sim.add_job(OFFENDER)
        daemon.wait_event("job_cancelled", job_uuid=offender, after=index)

        svc.write_config(
            rules=[RUNTIME_RULE, {**RUNTIME_RULE, "name": "second"}],
            metrics={"listen": "127.0.0.1:0"},
        )
        mark = daemon.position
        daemon.send(signal.SIGHUP)
        _, reloaded = daemon.wait_event("config_reloaded", after=mark)
        assert reloaded["rule_count"] == 2
        assert reloaded["restart_needed"] == ["metrics"]
        assert listening_sockets(daemon.proc.pid) == []
        daemon.wait_polls(2, after=mark)
        assert daemon.alive()
        assert daemon.stop() == 0
        assert svc.cancel_posts(offender) == 1


def test_reload_keeps_the_clocks_of_rules_that_keep_their_name(tmp_path: Path) -> None:
    """A rule that keeps its name keeps its first match; a renamed rule starts a new clock."""
    graced = {**RUNTIME_RULE, "grace": "1h"}
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.write_config(rules=[graced])
        daemon = svc.start()
        daemon.wait_event("poll_completed")
        job = svc.sim.add_job(OFFENDER)
        warned_at, _ = daemon.wait_event("job_warned", job_uuid=job, rule="frontera-12h")
        # Let a few seconds of the grace pass, counted in polls (one a second).
        index = daemon.wait_polls(4, after=warned_at)

        # Same name, grace now 2s: the match started 4+ polls ago, so the cancel is due at once.
        svc.write_config(rules=[{**graced, "grace": "2s"}])
        daemon.send(signal.SIGHUP)
        reloaded, _ = daemon.wait_event("config_reloaded", after=index)
        requested, _ = daemon.wait_event("job_cancel_requested", job_uuid=job, after=reloaded)
        polls_between = [
            e for e in daemon.events[reloaded:requested] if e["event"] == "poll_completed"
        ]
        assert len(polls_between) <= 1, "the grace restarted at the reload"
        assert len(daemon.named("rule_matched", job_uuid=job)) == 1
        assert len(daemon.named("job_warned", job_uuid=job)) == 1
        daemon.wait_event("job_cancelled", job_uuid=job, after=requested)
        assert daemon.stop() == 0
        assert svc.cancel_posts(job) == 1

        # A renamed rule is a new rule: its own first match, its own warning.
        second = svc.sim.add_job(OFFENDER)
        svc.write_config(rules=[{**graced, "name": "renamed"}])
        daemon = svc.start()
        daemon.wait_event("job_warned", job_uuid=second, rule="renamed")
        assert daemon.named("job_warned", job_uuid=job) == []  # the cancelled job is gone
        assert daemon.stop() == 0


def test_sigterm_records_a_cancel_already_sent(tmp_path: Path) -> None:
    """Stop while a cancel is being followed: it is in the store, and the next run confirms it."""
    slow = {**OFFENDER, "cancel_delay": "1h"}
    with service(tmp_path, fleet(slow, HEALTHY)) as svc:
        job = svc.sim.uuids()[0]
        svc.write_config()
        daemon = svc.start()
        daemon.wait_event("job_cancel_requested", job_uuid=job)
        assert daemon.stop(signal.SIGTERM) == 0
        daemon.wait_event("watchdog_stopped")
        assert daemon.notify.count("STOPPING") >= 1

        store = StateStore.open(tmp_path / "state.db")
        try:
            pending = store.pending_cancels()
        finally:
            store.close()
        assert [(p.job_uuid, p.rule, p.sent_at is not None) for p in pending] == [
            (job, "frontera-12h", True)
        ]

        svc.sim.advance(3600)  # the cancel lands while the daemon is down
        daemon = svc.start()
        _, cancelled = daemon.wait_event("job_cancelled", job_uuid=job)
        assert cancelled["final_status"] == "CANCELLED"
        assert daemon.stop() == 0
        assert svc.cancel_posts(job) == 1
        assert svc.sim.cancels_received(job) == 1


def test_check_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("tapis: {base_url: http://127.0.0.1:1}\nrules: []\nextra: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "check", "-c", str(broken)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
