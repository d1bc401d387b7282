"""Notifier through real Apprise `json://` targets, served by a recording HTTP server."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from watchdog.service.notify import Notifier, build_message

if TYPE_CHECKING:
    from collections.abc import Iterator

SECRET = "s3cret-token"


class Recorder:
    """A webhook endpoint: records each POSTed JSON body; can answer 500 or hang."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self.hang = False
        self.received = threading.Event()
        self.release = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                recorder.posts.append(json.loads(self.rfile.read(length)))
                recorder.received.set()
                if recorder.hang:
                    recorder.release.wait(30)
                self.send_response(recorder.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        port = self.server.server_address[1]
        # Credentials in the URL, as real targets have: they must never appear in an error.
        return f"json://bot:{SECRET}@127.0.0.1:{port}/hook?rto=30&cto=5"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class Claims:
    """The state store's claim: True exactly once per (job, rule, event)."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, str]] = set()
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, job_uuid: str, rule: str, event: str) -> bool:
        key = (job_uuid, rule, event)
        self.calls.append(key)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


class Failures(list[tuple[str, str]]):
    def __call__(self, event: str, error: str) -> None:
        self.append((event, error))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture
def claims() -> Claims:
    return Claims()


@pytest.fixture
def failures() -> Failures:
    return Failures()


def _notifier(
    url: str, events: list[str], claims: Claims, failures: Failures, **kwargs: Any
) -> Notifier:
    return Notifier([(url, events)], claim=claims, on_failure=failures, **kwargs)


def _job_event(event: str = "job_cancelled", job: str = "j-1", **fields: Any) -> dict[str, Any]:
    return {
        "event": event,
        "timestamp": "2025-01-02T03:04:05Z",
        "level": "info",
        "job_uuid": job,
        "owner": "alice",
        "app_id": "opensees-mp",
        "status": "RUNNING",
        "rule": "frontera-12h",
        "reason": "runtime 12h03m exceeds 12h",
        "dry_run": False,
    } | fields


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_subscribed_event_is_posted_once_with_the_job_details(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    notifier = _notifier(recorder.url, ["job_cancelled"], claims, failures)
    notifier.observe_event(_job_event(final_status="CANCELLED", latency_s=42.0))
    assert notifier.close(timeout=20)
    assert failures == []
    assert len(recorder.posts) == 1
    post = recorder.posts[0]
    assert post["title"] == "tapis-watchdog: job cancelled: job j-1"
    for text in ("j-1", "alice", "opensees-mp", "frontera-12h", "runtime 12h03m exceeds 12h"):
        assert text in post["message"]
    assert "cancelled (final status CANCELLED, after 42s)" in post["message"]
    assert post["type"] == "success"
    assert claims.calls == [("j-1", "frontera-12h", "job_cancelled")]


def test_repeated_event_is_sent_once_per_job_rule_event(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    notifier = _notifier(recorder.url, ["job_cancelled", "job_warned"], claims, failures)
    notifier.observe_event(_job_event())
    notifier.observe_event(_job_event())
    notifier.observe_event(_job_event(rule="other-rule"))
    notifier.observe_event(_job_event(job="j-2"))
    notifier.observe_event(_job_event(event="job_warned"))
    notifier.observe_event(_job_event(event="job_warned"))
    assert notifier.close(timeout=20)
    titles = sorted(p["title"] for p in recorder.posts)
    assert titles == [
        "tapis-watchdog: job cancelled: job j-1",
        "tapis-watchdog: job cancelled: job j-1",
        "tapis-watchdog: job cancelled: job j-2",
        "tapis-watchdog: job warned: job j-1",
    ]
    assert len(claims.calls) == 6
    assert failures == []


def test_unsubscribed_events_are_neither_claimed_nor_sent(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    notifier = _notifier(recorder.url, ["job_cancelled"], claims, failures)
    notifier.observe_event(_job_event(event="job_warned"))
    notifier.observe_event({"event": "poll_completed", "jobs_seen": 3})
    notifier.observe_event({})
    assert notifier.close(timeout=20)
    assert (recorder.posts, claims.calls, failures) == ([], [], [])


def test_events_without_a_job_are_sent_each_time_unclaimed(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    notifier = _notifier(recorder.url, ["circuit_opened"], claims, failures)
    notifier.observe_event({"event": "circuit_opened", "timestamp": "2025-01-02T03:04:05Z"})
    notifier.observe_event({"event": "circuit_opened", "timestamp": "2025-01-02T04:04:05Z"})
    assert notifier.close(timeout=20)
    assert [p["title"] for p in recorder.posts] == ["tapis-watchdog: circuit opened: watchdog"] * 2
    assert recorder.posts[0]["type"] == "warning"
    assert claims.calls == []


def test_each_target_gets_only_its_events(claims: Claims, failures: Failures) -> None:
    first, second = Recorder(), Recorder()
    try:
        notifier = Notifier(
            [(first.url, ["job_cancelled"]), (second.url, ["job_cancelled", "circuit_opened"])],
            claim=claims,
            on_failure=failures,
        )
        assert notifier.events == {"job_cancelled", "circuit_opened"}
        notifier.observe_event(_job_event())
        notifier.observe_event({"event": "circuit_opened"})
        assert notifier.close(timeout=20)
    finally:
        first.close()
        second.close()
    assert len(first.posts) == 1
    assert len(second.posts) == 2
    assert claims.calls == [("j-1", "frontera-12h", "job_cancelled")]


def test_target_answering_500_reports_without_the_url(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    recorder.status = 500
    notifier = _notifier(recorder.url, ["job_cancelled"], claims, failures)
    notifier.observe_event(_job_event())
    assert notifier.close(timeout=20)
    assert len(recorder.posts) == 1
    assert len(failures) == 1
    event, error = failures[0]
    assert event == "job_cancelled"
    assert error.startswith("json target #1: ")
    assert "500" in error
    assert SECRET not in error
    assert "json://" not in error


def test_closed_port_reports_a_failure(claims: Claims, failures: Failures) -> None:
    url = f"json://bot:{SECRET}@127.0.0.1:{_closed_port()}/hook"
    notifier = _notifier(url, ["job_cancelled"], claims, failures)
    notifier.observe_event(_job_event())
    assert notifier.close(timeout=20)
    assert len(failures) == 1
    assert failures[0][0] == "job_cancelled"
    assert SECRET not in failures[0][1]


def test_hanging_target_blocks_neither_the_caller_nor_shutdown(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    recorder.hang = True
    notifier = _notifier(recorder.url, ["job_cancelled"], claims, failures, send_timeout=300)
    notifier.observe_event(_job_event(job="j-1"))
    assert recorder.received.wait(20)
    # The first delivery now hangs in the server; the caller still returns at once.
    notifier.observe_event(_job_event(job="j-2"))
    notifier.observe_event(_job_event(job="j-3"))
    assert notifier.close(timeout=0.5)
    recorder.release.set()
    assert len(recorder.posts) == 1
    errors = sorted(error for _, error in failures)
    assert errors == [
        "json target #1: not delivered: shutting down while the send hangs",
        "json target #1: not sent: shutting down",
        "json target #1: not sent: shutting down",
    ]


def test_send_timeout_moves_on_to_the_next_message(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    recorder.hang = True
    notifier = _notifier(recorder.url, ["job_cancelled"], claims, failures, send_timeout=0.2)
    notifier.observe_event(_job_event(job="j-1"))
    assert recorder.received.wait(20)
    notifier.observe_event(_job_event(job="j-2"))
    assert notifier.close(timeout=20)
    recorder.release.set()
    assert [e for _, e in failures] == ["json target #1: timed out after 0.2s"] * 2


def test_hung_sends_are_bounded(recorder: Recorder, claims: Claims, failures: Failures) -> None:
    recorder.hang = True
    notifier = _notifier(recorder.url, ["job_cancelled"], claims, failures, send_timeout=0.1)
    for job in range(6):
        notifier.observe_event(_job_event(job=f"j-{job}"))
    assert notifier.close(timeout=20)
    recorder.release.set()
    assert [e for _, e in failures] == ["json target #1: timed out after 0.1s"] * 4 + [
        "json target #1: not sent: 4 earlier sends still hang"
    ] * 2


def test_queue_full_is_reported(recorder: Recorder, claims: Claims, failures: Failures) -> None:
    recorder.hang = True
    notifier = _notifier(
        recorder.url, ["job_cancelled"], claims, failures, send_timeout=300, max_pending=1
    )
    notifier.observe_event(_job_event(job="j-1"))
    assert recorder.received.wait(20)
    notifier.observe_event(_job_event(job="j-2"))
    notifier.observe_event(_job_event(job="j-3"))
    assert failures == [
        ("job_cancelled", "json target #1: not sent: too many pending notifications")
    ]
    assert notifier.close(timeout=0.2)
    recorder.release.set()


def test_events_after_close_are_reported(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    notifier = _notifier(recorder.url, ["job_cancelled"], claims, failures)
    assert notifier.close(timeout=20)
    notifier.observe_event(_job_event())
    assert failures == [("job_cancelled", "not sent: the notifier is closed")]
    assert claims.calls == []
    assert notifier.close(timeout=20)


def test_failing_claim_is_reported_not_raised(recorder: Recorder, failures: Failures) -> None:
    def claim(job_uuid: str, rule: str, event: str) -> bool:
        raise RuntimeError("database is locked")

    notifier = Notifier([(recorder.url, ["job_cancelled"])], claim=claim, on_failure=failures)
    notifier.observe_event(_job_event())
    assert notifier.close(timeout=20)
    assert recorder.posts == []
    assert failures == [
        ("job_cancelled", "not sent: claim failed: RuntimeError: database is locked")
    ]


def test_broken_failure_reporter_does_not_stop_delivery(claims: Claims) -> None:
    bad, good = Recorder(), Recorder()
    bad.status = 500

    def on_failure(event: str, error: str) -> None:
        raise RuntimeError("reporter broke")

    try:
        notifier = Notifier(
            [(bad.url, ["job_cancelled"]), (good.url, ["job_cancelled"])],
            claim=claims,
            on_failure=on_failure,
        )
        notifier.observe_event(_job_event(job="j-1"))
        notifier.observe_event(_job_event(job="j-2"))
        assert notifier.close(timeout=20)
    finally:
        bad.close()
        good.close()
    assert len(bad.posts) == 2
    assert len(good.posts) == 2


def test_events_logged_by_the_failure_reporter_are_not_notified(
    recorder: Recorder, claims: Claims
) -> None:
    recorder.status = 500
    reported: list[str] = []
    notifier = Notifier([(recorder.url, ["tapis_error"])], claim=claims, on_failure=print)

    def on_failure(event: str, error: str) -> None:
        reported.append(error)
        # What the daemon does: log an event, which reaches this same listener.
        notifier.observe_event({"event": "tapis_error", "operation": "notify", "error": error})

    notifier.on_failure = on_failure
    notifier.observe_event({"event": "tapis_error", "operation": "search_jobs"})
    assert notifier.close(timeout=20)
    assert len(recorder.posts) == 1
    assert len(reported) == 1


def test_failure_reported_in_the_callers_thread_does_not_recurse(
    recorder: Recorder, claims: Claims
) -> None:
    recorder.hang = True
    reported: list[str] = []
    notifier = Notifier(
        [(recorder.url, ["job_cancelled", "tapis_error"])],
        claim=claims,
        on_failure=print,
        send_timeout=300,
        max_pending=1,
    )

    def on_failure(event: str, error: str) -> None:
        reported.append(error)
        notifier.observe_event({"event": "tapis_error", "operation": "notify", "error": error})

    notifier.on_failure = on_failure
    notifier.observe_event(_job_event(job="j-1"))
    assert recorder.received.wait(20)
    notifier.observe_event(_job_event(job="j-2"))
    notifier.observe_event(_job_event(job="j-3"))
    assert reported == ["json target #1: not sent: too many pending notifications"]
    assert notifier.close(timeout=0.2)
    recorder.release.set()


def test_aclose_flushes_from_async_code(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    notifier = _notifier(recorder.url, ["job_cancelled"], claims, failures)
    notifier.observe_event(_job_event())
    assert anyio.run(notifier.aclose, 20)
    assert len(recorder.posts) == 1


@pytest.mark.parametrize(
    "url", ["nosuchscheme://x", "not a url", f"json{SECRET}", f"json{SECRET}://", f"{SECRET}:x"]
)
def test_invalid_url_is_rejected_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError, match="target #1: not a valid Apprise URL") as info:
        Notifier([(url, ["job_cancelled"])], claim=Claims(), on_failure=Failures())
    assert SECRET not in str(info.value)


def test_message_for_a_failed_cancel_in_dry_run() -> None:
    message = build_message(
        _job_event(
            event="job_cancel_failed", http_status=401, error="JOBS_MISMATCHED_OWNER", dry_run=True
        )
    )
    assert message.title == "tapis-watchdog: job cancel failed: job j-1 [dry run]"
    assert message.notify_type == "failure"
    assert message.body.splitlines() == [
        "Job: j-1",
        "Owner: alice",
        "App: opensees-mp",
        "Status: RUNNING",
        "Rule: frontera-12h",
        "Reason: runtime 12h03m exceeds 12h",
        "Outcome: cancel FAILED: Tapis refused it (HTTP 401, JOBS_MISMATCHED_OWNER) [dry run]",
        "At: 2025-01-02T03:04:05Z",
    ]


def test_message_for_a_skipped_cancel_and_sparse_events() -> None:
    skipped = build_message(_job_event(event="job_cancel_skipped", why="exempt"))
    assert "Outcome: cancel skipped (exempt)" in skipped.body.splitlines()
    sparse = build_message({"event": "something_new"})
    assert sparse.title == "tapis-watchdog: something new: watchdog"
    assert sparse.body == "Outcome: something new"
    assert sparse.notify_type == "info"


def test_a_dry_run_warning_does_not_use_up_the_real_one(
    recorder: Recorder, claims: Claims, failures: Failures
) -> None:
    notifier = _notifier(recorder.url, ["job_warned"], claims, failures)
    notifier.observe_event(_job_event(event="job_warned", dry_run=True))
    notifier.observe_event(_job_event(event="job_warned", dry_run=True))
    notifier.observe_event(_job_event(event="job_warned", dry_run=False))
    assert notifier.close(timeout=20)
    assert len(recorder.posts) == 2
    assert claims.calls == [
        ("j-1", "frontera-12h", "job_warned:dry_run"),
        ("j-1", "frontera-12h", "job_warned:dry_run"),
        ("j-1", "frontera-12h", "job_warned"),
    ]
    assert failures == []
