"""Notifications from the running service: Apprise `json://` targets served by the test.

One message per (job, rule, event), never repeated after a restart; a warning also lands in the
job's Tapis history (`sendEvent`); a target that fails or hangs never blocks or undoes a decision.
"""

from __future__ import annotations

import json
import signal
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from test_service_harness import (
    HEALTHY,
    OFFENDER,
    RUNTIME_RULE,
    fleet,
    service,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

WARN_RULE: dict[str, Any] = {
    "name": "long-queue",
    "match": {"status": ["QUEUED"]},
    "when": {"in_status_over": "2d"},
    "action": "warn",
}
QUEUED_LONG: dict[str, Any] = {"status": "QUEUED", "appId": "namd", "remoteSubmitted": "-3d"}
EVENTS = ["job_warned", "job_cancelled", "circuit_opened"]


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.bodies.append(json.loads(body))
        if self.server.mode == "hang":
            self.server.release.wait(30)
        status = 500 if self.server.mode == "fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


@contextmanager
def recorder(mode: str = "ok") -> Iterator[_Recorder]:
    server = _Recorder(mode)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _subjects(bodies: list[dict[str, Any]]) -> list[str]:
    return sorted(b["title"] for b in bodies)


def test_one_message_per_job_rule_event_across_restarts(tmp_path: Path) -> None:
    with recorder() as hook, service(tmp_path, fleet(OFFENDER, QUEUED_LONG, HEALTHY)) as svc:
        offender, queued, _ = svc.sim.uuids()
        svc.write_config(
            rules=[RUNTIME_RULE, WARN_RULE], notify=[{"url": hook.url, "events": EVENTS}]
        )
        daemon = svc.start()
        daemon.wait_event("job_cancelled", job_uuid=offender)
        daemon.wait_event("job_warned", job_uuid=queued)
        wait_until(lambda: len(hook.bodies) >= 2, "two notifications")
        mark = daemon.wait_polls(2, after=daemon.position - 1)
        assert daemon.stop() == 0
        titles = _subjects(hook.bodies)
        assert titles == sorted(
            [
                f"tapis-watchdog: job cancelled: job {offender}",
                f"tapis-watchdog: job warned: job {queued}",
            ]
        )
        warned = next(b for b in hook.bodies if queued in b["title"])
        assert "Rule: long-queue" in warned["message"]
        assert warned["type"] == "warning"
        # The warning is also in the job's own history, for its Tapis subscribers.
        notes = [e for e in svc.sim.history(queued) if e.get("event") == "JOB_USER_EVENT"]
        assert len(notes) == 1
        assert "long-queue" in json.dumps(notes[0])

        # After a restart nothing is sent again, though the warned job still matches.
        daemon = svc.start()
        mark, _ = daemon.wait_event("poll_completed")
        daemon.wait_polls(2, after=mark)
        assert daemon.stop() == 0
        assert len(hook.bodies) == 2
        notes = [e for e in svc.sim.history(queued) if e.get("event") == "JOB_USER_EVENT"]
        assert len(notes) == 1


def test_a_failing_or_hanging_target_blocks_nothing(tmp_path: Path) -> None:
    with (
        recorder("fail") as failing,
        recorder("hang") as hanging,
        service(tmp_path, fleet(HEALTHY)) as svc,
    ):
        svc.write_config(
            notify=[
                {"url": failing.url, "events": EVENTS},
                {"url": hanging.url, "events": EVENTS},
            ]
        )
        daemon = svc.start()
        mark, _ = daemon.wait_event("poll_completed")
        offenders = []
        for _ in range(2):
            job = svc.sim.add_job(OFFENDER)
            offenders.append(job)
            mark, _ = daemon.wait_event("job_cancelled", job_uuid=job, after=mark)
        daemon.wait_polls(2, after=mark)
        _, error = daemon.wait_event("tapis_error", operation="notify")
        assert "json target #1" in error["error"]
        assert failing.url.split("://")[1] not in error["error"]
        wait_until(lambda: len(hanging.bodies) >= 1, "a send to the hanging target")
        # Apprise gives up on the hanging target after its read timeout; the other one gets all.
        wait_until(lambda: len(failing.bodies) >= 2, "both messages to the other target")
        assert daemon.stop(signal.SIGTERM) == 0
        for job in offenders:
            assert svc.sim.cancels_received(job) == 1
