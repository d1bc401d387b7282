"""Starting and stopping in bad moments: Tapis down at start, signals before READY, hung calls."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from test_service_harness import (
    HEALTHY,
    OFFENDER,
    PASSWORD,
    STOP_WITHIN_S,
    fleet,
    http_get,
    service,
    wait_until,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_tapis_down_at_start_is_waited_out(tmp_path: Path) -> None:
    """Login failures at start are retried; READY=1 only after the first real login and poll."""
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.sim.set_fault(kind="error", endpoint="tokens", status=503, count=5)
        svc.write_config()
        daemon = svc.start()
        daemon.wait_event("poll_completed")
        daemon.notify.wait_for(lambda ms: any("READY" in m for m in ms), "READY=1")
        logins = [r.status for r in svc.sim.requests if r.endpoint == "tokens"]
        assert logins[:5] == [503] * 5
        assert 201 in logins
        assert daemon.alive()
        assert daemon.stop() == 0


def test_signals_before_the_first_good_poll(tmp_path: Path) -> None:
    """SIGHUP while no poll has succeeded reloads without READY=1; SIGTERM then stops cleanly."""
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.sim.set_fault(kind="error", endpoint="search", status=500)
        svc.write_config(metrics={"listen": "127.0.0.1:0"})
        daemon = svc.start()
        _, started = daemon.wait_event("watchdog_started")
        mark, _ = daemon.wait_event("poll_failed")
        status, body = http_get(f"{started['metrics_url']}/healthz")
        assert status == 503, body
        metrics = http_get(f"{started['metrics_url']}/metrics")[1]
        failed = 'tapis_watchdog_polls_total{outcome="failed"} '
        line = next(x for x in metrics.splitlines() if x.startswith(failed))
        assert float(line.removeprefix(failed)) >= 1
        daemon.send(signal.SIGHUP)
        daemon.wait_event("config_reloaded", after=mark)
        index = daemon.wait_polls(0, after=mark)
        daemon.wait_event("poll_failed", after=index + 1)
        assert daemon.notify.count("READY") == 0, daemon.notify.messages
        assert daemon.stop() == 0
        _, stopped = daemon.wait_event("watchdog_stopped")
        assert stopped["reason"] == "received SIGTERM"
        assert daemon.notify.count("READY") == 0


def test_sighup_and_sigterm_during_login(tmp_path: Path) -> None:
    """A login that hangs: SIGHUP does not kill the daemon, SIGTERM stops it with exit 0."""
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.sim.set_fault(kind="hang", endpoint="tokens", seconds=30)
        svc.write_config(timeout="20s")
        daemon = svc.start()
        daemon.wait_event("watchdog_started")
        wait_until(lambda: any(r.fault == "hang" for r in svc.sim.requests), "a hung login")
        daemon.send(signal.SIGHUP)
        daemon.wait_event("config_reloaded")
        assert daemon.alive()
        assert daemon.stop(signal.SIGTERM) == 0
        _, stopped = daemon.wait_event("watchdog_stopped")
        # The login is still blocked in its worker thread: the daemon leaves it behind.
        assert stopped["reason"].startswith("received SIGTERM")
        assert len(daemon.named("watchdog_stopped")) == 1


def test_sigterm_while_a_tapis_call_hangs(tmp_path: Path) -> None:
    """A search stuck for the whole `tapis.timeout` does not hold up a stop."""
    with service(tmp_path, fleet(OFFENDER)) as svc:
        svc.write_config(timeout="30s")
        daemon = svc.start()
        mark, _ = daemon.wait_event("poll_completed")
        svc.sim.set_fault(kind="hang", endpoint="search", seconds=60)
        wait_until(lambda: any(r.fault == "hang" for r in svc.sim.requests), "a hung search")
        assert daemon.stop(signal.SIGTERM) == 0
        _, stopped = daemon.wait_event("watchdog_stopped", after=mark)
        assert stopped["reason"].startswith("received SIGTERM")
        assert daemon.notify.count("STOPPING") >= 1
        assert len(daemon.named("watchdog_stopped")) == 1


def test_a_wrong_password_exits_3(tmp_path: Path) -> None:
    """An identity that cannot log in is not an outage: exit 3, and systemd hears no READY."""
    with service(tmp_path, fleet(HEALTHY)) as svc:
        svc.write_config()
        svc.config_path.write_text(svc.config_path.read_text().replace(PASSWORD, "wrong"))
        daemon = svc.start()
        _, stopped = daemon.wait_event("watchdog_stopped")
        assert stopped["reason"] == "cannot authenticate to Tapis"
        assert daemon.proc.wait(STOP_WITHIN_S) == 3
        assert daemon.notify.count("READY") == 0
        assert daemon.named("poll_failed") == []
