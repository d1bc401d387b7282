"""Notifications through Apprise: one message per (job, rule, event), sent off the caller's thread.

`Notifier.observe_event` is a listener for the event log. For an event some target subscribes to,
it claims (job, rule, event) in the state store, builds a short message and queues it; a sender
thread delivers it. The caller is never blocked and never sees an exception: Apprise's `notify` is
synchronous and a target can hang, so each delivery runs in its own short-lived thread that the
sender waits on for at most `send_timeout` seconds.

Delivery is at most once. The claim is taken before the message is sent, so a message that fails
is reported through `on_failure` and not retried, and a claimed message is never sent again after a
restart. Events without a job (`circuit_opened`, `circuit_closed`, ...) mark a change of state that
happens once per occurrence, so they are not claimed: they are sent each time they occur.

A target's URL holds credentials (SMTP password, webhook token). It never appears in an error:
targets are named `json target #2` (scheme and position in the configuration).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

    import apprise

_MAX_HUNG_SENDS = 4
_REPORT_GRACE_S = 2.0
_URL = re.compile(r"[A-Za-z][\w+.-]*://\S+")
_OUTCOMES = {
    "rule_matched": "rule matched",
    "job_warned": "warned: the rule matched, action follows if it still matches after the grace",
    "job_cleared": "cleared: the job stopped violating before the grace ended",
    "job_cancel_requested": "cancel sent to Tapis",
    "job_cancelled": "cancelled",
    "job_cancel_unconfirmed": "cancel NOT confirmed: the job is still active after verify_timeout",
    "job_cancel_failed": "cancel FAILED: Tapis refused it",
    "job_cancel_skipped": "cancel skipped",
    "circuit_opened": "circuit breaker OPEN: no cancels are sent until it closes",
    "circuit_closed": "circuit breaker closed: cancels resume",
    "silence_added": "silence added: the jobs it matches are spared from cancels until it expires",
    "silence_expired": "silence over: the jobs it spared can be cancelled again",
}
_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Message:
    """One notification: what Apprise sends."""

    event: str
    title: str
    body: str
    notify_type: str


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _outcome(name: str, event: Mapping[str, Any]) -> str:
    outcome = _OUTCOMES.get(name, name.replace("_", " "))
    extra = []
    if name == "job_cancelled":
        extra = [f"final status {event.get('final_status')}"] if event.get("final_status") else []
        if isinstance(event.get("latency_s"), int | float):
            extra.append(f"after {event['latency_s']:.0f}s")
    elif name == "job_cancel_failed":
        extra = [f"HTTP {event['http_status']}"] if event.get("http_status") is not None else []
        if _text(event.get("error")):
            extra.append(str(event["error"]))
    elif name == "job_cancel_skipped" and _text(event.get("why")):
        extra = [str(event["why"])]
    elif _text(event.get("error")):
        extra = [str(event["error"])]
    return f"{outcome} ({', '.join(extra)})" if extra else outcome


def _notify_type(name: str) -> str:
    if name in {"job_cancel_failed", "poll_failed", "config_reload_failed"}:
        return "failure"
    if name in {"job_cancelled", "circuit_closed", "job_cleared"}:
        return "success"
    if name in {"job_warned", "job_cancel_unconfirmed", "circuit_opened"}:
        return "warning"
    return "info"


def build_message(event: Mapping[str, Any]) -> Message:
    """A short title and a body (job, owner, app, rule, reason, outcome) for one event dict."""
    name = str(event.get("event") or "event")
    job = _text(event.get("job_uuid"))
    rule = _text(event.get("rule"))
    dry = " [dry run]" if event.get("dry_run") is True else ""
    silence = _text(event.get("silence_id"))
    subject = f"job {job}" if job else (f"silence {silence}" if silence else "watchdog")
    title = f"tapis-watchdog: {name.replace('_', ' ')}: {subject}{dry}"
    lines = [
        f"{label}: {value}"
        for label, value in (
            ("Job", job),
            ("Owner", _text(event.get("owner"))),
            ("App", _text(event.get("app_id"))),
            ("Status", _text(event.get("status"))),
            ("Rule", rule),
            ("Reason", _text(event.get("reason"))),
            # A grace warning: when the cancel comes, and the command that lets the job run.
            ("Cancel at", _text(event.get("cancel_at"))),
            ("To let it run", _text(event.get("spare_command"))),
            ("Silence", _text(event.get("silence_id"))),
            ("Matches", _text(event.get("matches"))),
            ("By", _text(event.get("by"))),
            ("Until", _text(event.get("expires_at"))),
        )
        if value is not None
    ]
    lines.append(f"Outcome: {_outcome(name, event)}{dry}")
    if _text(event.get("timestamp")):
        lines.append(f"At: {event['timestamp']}")
    return Message(name, title, "\n".join(lines), _notify_type(name))


def _redact(text: str) -> str:
    return _URL.sub("<url>", text)


def _load_target(url: str, index: int) -> tuple[str, apprise.Apprise]:
    """A label such as `json target #2` and an Apprise object for the `index`th target's URL.

    Raises:
        ValueError: the URL is not a valid Apprise URL; the message holds no part of it.
    """
    with _LOAD_LOCK, warnings.catch_warnings():
        # Apprise's e-mail plugin imports the stdlib `imghdr` (deprecated in 3.11, gone in 3.13,
        # for which Apprise ships a shim) when its plugins first load: not ours to act on.
        warnings.filterwarnings(
            "ignore", message="'imghdr' is deprecated", category=DeprecationWarning
        )
        import apprise  # noqa: PLC0415 - loads ~100 plugins: only when notifications are configured

        # Apprise logs rejected URLs verbatim, credentials included, and its lines are not events:
        # keep them out of the process's logs; failures reach the event log through on_failure.
        apprise_logger = logging.getLogger("apprise")
        apprise_logger.propagate = False
        if not apprise_logger.handlers:
            apprise_logger.addHandler(logging.NullHandler())
        # The service runs with a read-only file system: keep Apprise's plugin cache in memory.
        asset = apprise.AppriseAsset(storage_mode="memory")
        service = apprise.Apprise.instantiate(url, asset=asset)
    if service is None:
        raise ValueError(f"target #{index}: not a valid Apprise URL")
    target = apprise.Apprise(asset=asset)
    target.add(service)
    # The scheme of a URL Apprise accepted names a known service, never a secret.
    return f"{url.partition('://')[0].lower()} target #{index}", target


@dataclass(frozen=True)
class _Target:
    label: str
    apprise: apprise.Apprise
    events: frozenset[str]


class Notifier:
    """Sends Apprise notifications for subscribed events from a background thread.

    `on_failure(event, error)` is called from the sender thread (or from `observe_event` when the
    queue is full or a claim fails); it may be replaced after construction and must be
    thread-safe. Its `error` never contains a target URL.
    """

    def __init__(
        self,
        targets: Sequence[tuple[str, Collection[str]]],
        *,
        claim: Callable[[str, str, str], bool],
        on_failure: Callable[[str, str], None],
        send_timeout: float = 30.0,
        max_pending: int = 1000,
    ) -> None:
        """Load every target (Apprise URL, event names) and start the sender thread.

        Raises:
            ValueError: a URL is not a valid Apprise URL; the message names the target by scheme
                and position, never by URL.
        """
        self._targets = [
            _Target(*_load_target(url, index), frozenset(events))
            for index, (url, events) in enumerate(targets, start=1)
        ]
        self.on_failure = on_failure
        self._claim = claim
        self._send_timeout = send_timeout
        self._queue: queue.Queue[tuple[_Target, Message] | None] = queue.Queue(max_pending)
        self._closed = False
        self._deadline: float | None = None
        self._hung: list[threading.Thread] = []
        self._local = threading.local()
        self._thread = threading.Thread(target=self._run, name="tapis-watchdog-notify", daemon=True)
        self._thread.start()

    @property
    def events(self) -> frozenset[str]:
        """Every event name some target subscribes to."""
        return frozenset().union(*(t.events for t in self._targets))

    def observe_event(self, event: Mapping[str, Any]) -> None:
        """Queue a message for each target subscribed to this event; never blocks, never raises.

        Job events are claimed first, so each (job, rule, event) is sent at most once.
        """
        if threading.current_thread() is self._thread or getattr(self._local, "reporting", False):
            # An event logged by on_failure itself: notifying about it could loop forever.
            return
        name = event.get("event")
        targets = [t for t in self._targets if name in t.events]
        if not targets or not isinstance(name, str):
            return
        if self._closed:
            self._report(name, "not sent: the notifier is closed")
            return
        job = _text(event.get("job_uuid"))
        if job is not None:
            # A dry run's message is claimed apart from the real one, so a rule that leaves
            # shadow mode still notifies its first real warning or cancel.
            claimed = f"{name}:dry_run" if event.get("dry_run") is True else name
            try:
                if not self._claim(job, _text(event.get("rule")) or "-", claimed):
                    return
            except Exception as exc:
                self._report(name, f"not sent: claim failed: {type(exc).__name__}: {exc}")
                return
        try:
            message = build_message(event)
        except Exception as exc:
            self._report(name, f"not sent: cannot build the message: {type(exc).__name__}")
            return
        for target in targets:
            try:
                self._queue.put_nowait((target, message))
            except queue.Full:
                self._report(name, f"{target.label}: not sent: too many pending notifications")

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued within `timeout` seconds, then stop; later events are reported.

        Messages still pending at the deadline are reported through `on_failure`. Returns True
        when the sender finished (within the deadline plus a short grace for those reports).
        """
        if not self._closed:
            self._closed = True
            self._deadline = time.monotonic() + timeout
            # The sentinel may wait for room only as long as the deadline allows.
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=max(0.0, timeout))
        # Past the deadline the sender only reports what it drops: a short grace suffices.
        self._thread.join(max(0.0, (self._deadline or 0.0) - time.monotonic()) + _REPORT_GRACE_S)
        return not self._thread.is_alive()

    async def aclose(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109 - a flush deadline
        """`close` from async code, in a worker thread so the event loop keeps running."""
        return await anyio.to_thread.run_sync(self.close, timeout, abandon_on_cancel=True)

    def _report(self, event: str, error: str) -> None:
        self._local.reporting = True
        # A broken reporter must not stop the notifications after it.
        try:
            with contextlib.suppress(Exception):
                self.on_failure(event, _redact(error))
        finally:
            self._local.reporting = False

    def _run(self) -> None:
        while True:
            try:
                # Once closed, an empty queue means done (even if the sentinel found no room).
                item = self._queue.get(timeout=0.2 if self._closed else None)
            except queue.Empty:
                return
            if item is None:
                return
            target, message = item
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                self._report(message.event, f"{target.label}: not sent: shutting down")
                continue
            timeout = (
                self._send_timeout if remaining is None else min(self._send_timeout, remaining)
            )
            error = self._send(target, message, timeout)
            if error is not None:
                self._report(message.event, error)

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _send(self, target: _Target, message: Message, timeout: float) -> str | None:
        """Deliver within `timeout` seconds; the error text on failure, None on success."""
        self._hung = [t for t in self._hung if t.is_alive()]
        if len(self._hung) >= _MAX_HUNG_SENDS:
            return f"{target.label}: not sent: {len(self._hung)} earlier sends still hang"
        outcome: list[str | None] = []
        worker = threading.Thread(
            target=lambda: outcome.append(_deliver(target, message)),
            name="tapis-watchdog-notify-send",
            daemon=True,
        )
        worker.start()
        give_up = time.monotonic() + timeout
        while worker.is_alive():
            # close() may set a deadline while this send is in flight: keep checking it.
            deadline = give_up if self._deadline is None else min(give_up, self._deadline)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            worker.join(min(left, 0.1))
        if worker.is_alive():
            self._hung.append(worker)
            if time.monotonic() < give_up:
                return f"{target.label}: not delivered: shutting down while the send hangs"
            return f"{target.label}: timed out after {timeout:g}s"
        return outcome[0] if outcome else f"{target.label}: the send thread died"


def _deliver(target: _Target, message: Message) -> str | None:
    try:
        result = target.apprise.notify(
            body=message.body, title=message.title, notify_type=message.notify_type
        )
    except Exception as exc:
        return f"{target.label}: {type(exc).__name__}: {exc}"
    if result:
        return None
    return f"{target.label}: {_failure_detail(result)}"


def _failure_detail(result: object) -> str:
    # Apprise 2 returns a result with captured log lines; Apprise 1 returns a bare False.
    logs = getattr(result, "logs", None)
    if callable(logs):
        problems = [
            str(entry.message)
            for entry in logs()
            if getattr(entry, "level", "") in {"WARNING", "ERROR", "CRITICAL"}
        ]
        if problems:
            return problems[-1]
    return "delivery failed"


def load_target(url: str, index: int) -> tuple[str, apprise.Apprise]:
    """A label such as `json target #2` and an Apprise object for the `index`th target's URL.

    Raises:
        ValueError: the URL is not a valid Apprise URL; the message holds no part of it.
    """
    return _load_target(url, index)


def send_message(
    label: str, service: apprise.Apprise, message: Message, timeout: float
) -> str | None:
    """Deliver `message` within `timeout` seconds (a hung send is abandoned in its thread).

    Returns None on success, else the error, which never holds a URL.
    """
    target = _Target(label, service, frozenset())
    outcome: list[str | None] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_deliver(target, message)),
        name="tapis-watchdog-digest-send",
        daemon=True,
    )
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return f"{label}: timed out after {timeout:g}s"
    error = outcome[0] if outcome else f"{label}: the send thread died"
    return None if error is None else _redact(error)
