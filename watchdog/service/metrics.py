"""Prometheus metrics and the health check, fed by the product's events.

`Metrics` keeps its own `CollectorRegistry` (never prometheus_client's global one, so two daemons in
one test process do not collide) and is a listener for the event log: `observe_event` takes the
same dicts that are written to stdout. Tapis calls are observed directly by the client through
`observe_tapis_call`. `Metrics.start_server` serves `/metrics` and `/healthz` on one address.

Every name starts with `tapis_watchdog_`:

    polls_total{outcome}                       ok | failed
    poll_duration_seconds                      histogram of successful polls
    poll_interval_seconds                      the configured interval (for alert rules)
    last_successful_poll_timestamp_seconds     Unix time of the last good poll
    jobs_watched                               active jobs seen by the last poll
    rule_matches_total{rule}                   first matches of a (job, rule)
    cancels_total{rule, outcome}               requested | cancelled | unconfirmed | failed |
                                               skipped_<why> (exempt, dry_run, circuit_open, ...)
    tapis_calls_total{operation, http_status}  http_status "none" when no response came back
    tapis_call_duration_seconds{operation}     histogram
    circuit_open                               1 while the breaker holds cancels back
    build_info{version}
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar, Self

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from watchdog import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_PREFIX = "tapis_watchdog"
_HEALTHY_INTERVALS = 3
_CANCEL_OUTCOMES = {
    "job_cancel_requested": "requested",
    "job_cancelled": "cancelled",
    "job_cancel_unconfirmed": "unconfirmed",
    "job_cancel_failed": "failed",
}
_TAPIS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_POLL_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _label(value: Any) -> str:
    return value if isinstance(value, str) and value else "-"


def _number(value: Any) -> float | None:
    # bool is an int; a True duration is a bug upstream, not a measurement.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _check_interval(interval_s: float) -> float:
    if not interval_s > 0:
        raise ValueError(f"the poll interval must be > 0 seconds: {interval_s!r}")
    return float(interval_s)


class Metrics:
    """The daemon's metrics in a private registry, plus the health rule for `/healthz`."""

    def __init__(self, interval_s: float, *, clock: Callable[[], float] = time.time) -> None:
        """Start with no good poll yet (unhealthy) and the poll interval `interval_s` in seconds.

        `clock` returns Unix time; tests pass their own. Raises ValueError if `interval_s <= 0`.
        """
        self._interval = _check_interval(interval_s)
        self._clock = clock
        self._last_good: float | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter(f"{_PREFIX}_polls", "Polls by outcome.", ["outcome"], registry=r)
        self.poll_duration = Histogram(
            f"{_PREFIX}_poll_duration_seconds",
            "Duration of successful polls.",
            buckets=_POLL_BUCKETS,
            registry=r,
        )
        self.poll_interval = Gauge(
            f"{_PREFIX}_poll_interval_seconds", "The configured poll interval.", registry=r
        )
        self.last_good_poll = Gauge(
            f"{_PREFIX}_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll (0 before the first).",
            registry=r,
        )
        self.jobs_watched = Gauge(
            f"{_PREFIX}_jobs_watched", "Active jobs seen by the last poll.", registry=r
        )
        self.rule_matches = Counter(
            f"{_PREFIX}_rule_matches", "First matches of a (job, rule).", ["rule"], registry=r
        )
        self.cancels = Counter(
            f"{_PREFIX}_cancels",
            "Cancel decisions by rule and outcome.",
            ["rule", "outcome"],
            registry=r,
        )
        self.tapis_calls = Counter(
            f"{_PREFIX}_tapis_calls",
            "Calls to Tapis by operation and HTTP status (none: no response).",
            ["operation", "http_status"],
            registry=r,
        )
        self.tapis_latency = Histogram(
            f"{_PREFIX}_tapis_call_duration_seconds",
            "Latency of calls to Tapis.",
            ["operation"],
            buckets=_TAPIS_BUCKETS,
            registry=r,
        )
        self.circuit_open = Gauge(
            f"{_PREFIX}_circuit_open", "1 while the circuit breaker holds cancels.", registry=r
        )
        Info(f"{_PREFIX}_build", "The running version.", registry=r).info({"version": __version__})
        for outcome in ("ok", "failed"):
            self.polls.labels(outcome=outcome)
        self.poll_interval.set(self._interval)

    def set_interval(self, interval_s: float) -> None:
        """Use a new poll interval (after a reload). Raises ValueError if `interval_s <= 0`."""
        self._interval = _check_interval(interval_s)
        self.poll_interval.set(self._interval)

    def set_jobs_watched(self, count: int) -> None:
        """Record how many active jobs the last poll saw."""
        self.jobs_watched.set(count)

    def healthy(self, now: float | None = None) -> bool:
        """True while the last good poll is younger than three poll intervals (Unix time `now`)."""
        last = self._last_good
        if last is None:
            return False
        current = self._clock() if now is None else now
        return current - last < _HEALTHY_INTERVALS * self._interval

    def observe_tapis_call(self, operation: str, http_status: int | None, latency_s: float) -> None:
        """Count one Tapis call and its latency; `http_status` is None when nothing came back."""
        status = "none" if http_status is None else str(http_status)
        self.tapis_calls.labels(operation=operation, http_status=status).inc()
        self.tapis_latency.labels(operation=operation).observe(max(0.0, latency_s))

    def observe_event(self, event: Mapping[str, Any]) -> None:
        """Update the metrics from one product event dict; other events are ignored.

        Never raises on a missing or ill-typed field: the field is simply not counted.
        """
        name = event.get("event")
        if name == "poll_completed":
            self._poll_completed(event)
        elif name == "poll_failed":
            self.polls.labels(outcome="failed").inc()
        elif name == "rule_matched":
            self.rule_matches.labels(rule=_label(event.get("rule"))).inc()
        elif name in _CANCEL_OUTCOMES:
            outcome = _CANCEL_OUTCOMES[name]
            self.cancels.labels(rule=_label(event.get("rule")), outcome=outcome).inc()
        elif name == "job_cancel_skipped":
            outcome = f"skipped_{_label(event.get('why'))}"
            self.cancels.labels(rule=_label(event.get("rule")), outcome=outcome).inc()
        elif name == "circuit_opened":
            self.circuit_open.set(1)
        elif name == "circuit_closed":
            self.circuit_open.set(0)

    def _poll_completed(self, event: Mapping[str, Any]) -> None:
        now = self._clock()
        self._last_good = now
        self.last_good_poll.set(now)
        self.polls.labels(outcome="ok").inc()
        jobs_seen = _number(event.get("jobs_seen"))
        if jobs_seen is not None:
            self.jobs_watched.set(jobs_seen)
        duration = _number(event.get("duration_s"))
        if duration is not None:
            self.poll_duration.observe(max(0.0, duration))

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    def start_server(self, listen: str) -> MetricsServer:
        """Serve `/metrics` and `/healthz` on `listen` (`host:port`, `[::1]:port`; 0: any port).

        Raises:
            ValueError: `listen` is not `host:port`.
            OSError: the address cannot be bound (in use, not local, ...).
        """
        return start_server(listen, self)


def start_server(listen: str, metrics: Metrics) -> MetricsServer:
    """Serve `metrics` on `/metrics` and `/healthz` at `listen`; see `Metrics.start_server`.

    Raises:
        ValueError: `listen` is not `host:port`.
        OSError: the address cannot be bound (in use, not local, ...).
    """
    host, port = parse_listen(listen)
    return MetricsServer(metrics, host, port)


def parse_listen(listen: str) -> tuple[str, int]:
    """Split `127.0.0.1:9469` or `[::1]:9469` into host and port.

    Raises:
        ValueError: not `host:port`, or the port is outside 0..65535.
    """
    host, sep, port_text = listen.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f'expected "host:port" such as "127.0.0.1:9469", got {listen!r}')
    if bracketed or ":" in host:
        try:
            ipaddress.IPv6Address(host if bracketed else "")
        except ValueError:
            msg = f'expected an IPv6 address in brackets such as "[::1]:9469", got {listen!r}'
            raise ValueError(msg) from None
    return host, int(port_text)


class _Handler(BaseHTTPRequestHandler):
    metrics: ClassVar[Metrics]
    server_version = "tapis-watchdog"

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            status, content_type, body = HTTPStatus.OK, CONTENT_TYPE_LATEST, self.metrics.render()
        elif path == "/healthz":
            healthy = self.metrics.healthy()
            status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
            content_type = "text/plain; charset=utf-8"
            body = b"ok\n" if healthy else b"unhealthy: no successful poll within 3 intervals\n"
        else:
            status, content_type, body = HTTPStatus.NOT_FOUND, "text/plain", b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        # stdout belongs to the event log and scrapes are not events: stay quiet.
        pass


class MetricsServer:
    """An HTTP listener for `/metrics` and `/healthz`, serving from a daemon thread."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        """Bind `host:port` and start serving. Raises OSError when the address cannot be bound."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        handler = type("MetricsHandler", (_Handler,), {"metrics": metrics})
        server_class = type(
            "MetricsHTTPServer",
            (ThreadingHTTPServer,),
            {"address_family": family, "daemon_threads": True},
        )
        self._server: ThreadingHTTPServer = server_class((host, port), handler)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="tapis-watchdog-metrics",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:9469`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening and wait up to `timeout` seconds for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
