"""Prometheus metrics and the health check, fed by the product's events.

`Metrics` keeps its own `CollectorRegistry` (never prometheus_client's global one, so two daemons in
one test process do not collide) and is a listener for the event log: `observe_event` takes the
same dicts that are written to stdout. Tapis calls are observed directly by the client through
`observe_tapis_call`. `/metrics` is prometheus_client's own WSGI application (text format or
OpenMetrics by the `Accept` header, gzip when asked, `name[]` filtering); `/healthz` is ours. Both
are mounted on the listener of `watchdog.service.listener`, where other routes can join them.

Every product name starts with `tapis_watchdog_`:

    polls_total{outcome}                       ok | failed
    poll_duration_seconds                      histogram of successful polls
    poll_interval_seconds                      the configured interval (for alert rules)
    last_successful_poll_timestamp_seconds     Unix time of the last good poll
    jobs_watched                               active jobs seen by the last poll
    silences_active                            silences in force at the last poll
    rule_matches_total{rule}                   first matches of a (job, rule)
    cancels_requested_total{rule}              cancels sent (job_cancel_requested)
    cancels_total{rule, outcome}               how sent cancels ended: cancelled | unconfirmed |
                                               failed (one per cancel, so a sum counts cancels)
    cancels_skipped_total{rule, why}           cancels not sent: exempt, dry_run, circuit_open, ...
    tapis_calls_total{operation, http_status}  http_status "none" when no response came back
    tapis_call_duration_seconds{operation}     histogram
    circuit_open                               1 while the breaker holds cancels back
    budget_usage{budget, unit}                 each budget's usage (or count) at the last poll
    budget_limit{budget, unit}                 its limit
    build_info{version}

plus prometheus_client's `process_*` (CPU, memory, open files, start time), `python_info` and
`python_gc_*`. No `*_created` series: they double the series count and no alert needs them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    make_wsgi_app,
)

from watchdog import __version__
from watchdog.service.listener import HttpListener, Routes, parse_listen, start_listener

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from watchdog.service.listener import StartResponse, WSGIApp

__all__ = ["Metrics", "MetricsServer", "parse_listen", "start_server"]

MetricsServer = HttpListener
"""The listener that serves the metrics (kept under this name for the daemon and the demo)."""

# Process-wide in prometheus_client; set before any sample is collected.
disable_created_metrics()  # type: ignore[no-untyped-call]

_PREFIX = "tapis_watchdog"
_HEALTHY_INTERVALS = 3
_CANCEL_OUTCOMES = {
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
        self.silences_active = Gauge(
            f"{_PREFIX}_silences_active", "Silences in force at the last poll.", registry=r
        )
        self.rule_matches = Counter(
            f"{_PREFIX}_rule_matches", "First matches of a (job, rule).", ["rule"], registry=r
        )
        self.cancels_requested = Counter(
            f"{_PREFIX}_cancels_requested",
            "Cancels sent to Tapis, by rule.",
            ["rule"],
            registry=r,
        )
        self.cancels = Counter(
            f"{_PREFIX}_cancels",
            "How sent cancels ended, by rule: cancelled, unconfirmed or failed.",
            ["rule", "outcome"],
            registry=r,
        )
        self.cancels_skipped = Counter(
            f"{_PREFIX}_cancels_skipped",
            "Cancels decided but not sent, by rule and why (exempt, dry_run, circuit_open, ...).",
            ["rule", "why"],
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
        self.budget_usage = Gauge(
            f"{_PREFIX}_budget_usage",
            "Each budget's usage (node hours, SU) or count at the last poll.",
            ["budget", "unit"],
            registry=r,
        )
        self.budget_limit = Gauge(
            f"{_PREFIX}_budget_limit",
            "Each budget's limit, in the unit of its usage.",
            ["budget", "unit"],
            registry=r,
        )
        Info(f"{_PREFIX}_build", "The running version.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if GC_COLLECTOR is not None:  # None where the interpreter has no gc.get_stats
            GCCollector(registry=r)
        for outcome in ("ok", "failed"):
            self.polls.labels(outcome=outcome)
        self.poll_interval.set(self._interval)

    def set_interval(self, interval_s: float) -> None:
        """Use a new poll interval (after a reload). Raises ValueError if `interval_s <= 0`."""
        self._interval = _check_interval(interval_s)
        self.poll_interval.set(self._interval)

    def declare_rules(self, names: Iterable[str]) -> None:
        """Export every per-rule series at 0 for the rules `names` (at start and on reload).

        Prometheus sees a counter's first sample as its start, not as an increase: a series that
        first appears at 1 (the first unconfirmed cancel of a rule) makes `increase()` 0, and the
        alert on it would never fire. Series of rules removed by a reload stay, as counters do.
        """
        for rule in names:
            self.rule_matches.labels(rule=rule)
            self.cancels_requested.labels(rule=rule)
            for outcome in _CANCEL_OUTCOMES.values():
                self.cancels.labels(rule=rule, outcome=outcome)

    def set_budgets(self, figures: Iterable[tuple[str, str, float, float]]) -> None:
        """Record each budget's (name, unit, usage, limit) at the last poll."""
        for name, unit, usage, limit in figures:
            self.budget_usage.labels(budget=name, unit=unit).set(usage)
            self.budget_limit.labels(budget=name, unit=unit).set(limit)

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
        elif name == "job_cancel_requested":
            self.cancels_requested.labels(rule=_label(event.get("rule"))).inc()
        elif name in _CANCEL_OUTCOMES:
            outcome = _CANCEL_OUTCOMES[name]
            self.cancels.labels(rule=_label(event.get("rule")), outcome=outcome).inc()
        elif name == "job_cancel_skipped":
            why = _label(event.get("why"))
            self.cancels_skipped.labels(rule=_label(event.get("rule")), why=why).inc()
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
        silences = _number(event.get("silences_active"))
        if silences is not None:
            self.silences_active.set(silences)
        duration = _number(event.get("duration_s"))
        if duration is not None:
            self.poll_duration.observe(max(0.0, duration))

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    def metrics_app(self) -> WSGIApp:
        """prometheus_client's WSGI application for this registry (`/metrics`)."""
        app: WSGIApp = make_wsgi_app(self.registry)
        return app

    def healthz_app(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """`/healthz`: 200 `ok` while `healthy()`, else 503 saying why; GET and HEAD only."""
        if environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            status, body = "405 Method Not Allowed", b"use GET or HEAD\n"
        elif self.healthy():
            status, body = "200 OK", b"ok\n"
        else:
            status, body = "503 Service Unavailable", _UNHEALTHY
        start_response(
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                ("Allow", "GET, HEAD"),
            ],
        )
        return [body]

    def mount(self, routes: Routes) -> Routes:
        """Add `/metrics` and `/healthz` to `routes`, and return it."""
        routes.mount("/metrics", self.metrics_app())
        routes.mount("/healthz", self.healthz_app)
        return routes

    def start_server(self, listen: str) -> HttpListener:
        """Serve `/metrics` and `/healthz` on `listen` (`host:port`, `[::1]:port`; 0: any port).

        Raises:
            ValueError: `listen` is not `host:port`.
            OSError: the address cannot be bound (in use, not local, ...).
        """
        return start_server(listen, self)


_UNHEALTHY = f"unhealthy: no successful poll within {_HEALTHY_INTERVALS} intervals\n".encode()


def start_server(listen: str, metrics: Metrics) -> HttpListener:
    """Serve `metrics` on `/metrics` and `/healthz` at `listen`; see `Metrics.start_server`.

    More routes can be mounted on the returned listener's `routes`.

    Raises:
        ValueError: `listen` is not `host:port`.
        OSError: the address cannot be bound (in use, not local, ...).
    """
    return start_listener(listen, metrics.mount(Routes()))
