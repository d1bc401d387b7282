"""Metrics from product events, and the /metrics and /healthz listener over real HTTP."""

from __future__ import annotations

import gzip
import http.client
import socket
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from watchdog.service.metrics import Metrics, parse_listen, start_server

if TYPE_CHECKING:
    from collections.abc import Iterator

    from watchdog.service.metrics import MetricsServer

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics(clock: Clock) -> Metrics:
    return Metrics(60.0, clock=clock)


@pytest.fixture
def server(metrics: Metrics) -> Iterator[MetricsServer]:
    with metrics.start_server("127.0.0.1:0") as srv:
        yield srv


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _get(server: MetricsServer, path: str, method: str = "GET") -> tuple[int, str, str]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


def _poll_completed(**fields: Any) -> dict[str, Any]:
    base = {"event": "poll_completed", "jobs_seen": 7, "matches": 1, "cancels": 0}
    return base | {"api_calls": 3, "duration_s": 0.8} | fields


def test_poll_outcomes_start_at_zero(metrics: Metrics) -> None:
    assert _value(metrics, "tapis_watchdog_polls_total", outcome="ok") == 0
    assert _value(metrics, "tapis_watchdog_polls_total", outcome="failed") == 0
    assert _value(metrics, "tapis_watchdog_circuit_open") == 0
    assert _value(metrics, "tapis_watchdog_poll_interval_seconds") == 60


def test_poll_completed_and_failed(metrics: Metrics, clock: Clock) -> None:
    metrics.observe_event(_poll_completed())
    clock.now += 60
    metrics.observe_event(_poll_completed(jobs_seen=9, duration_s=1.5))
    metrics.observe_event({"event": "poll_failed", "error": "Tapis unavailable"})
    assert _value(metrics, "tapis_watchdog_polls_total", outcome="ok") == 2
    assert _value(metrics, "tapis_watchdog_polls_total", outcome="failed") == 1
    assert _value(metrics, "tapis_watchdog_jobs_watched") == 9
    assert _value(metrics, "tapis_watchdog_last_successful_poll_timestamp_seconds") == T0 + 60
    assert _value(metrics, "tapis_watchdog_poll_duration_seconds_count") == 2
    assert _value(metrics, "tapis_watchdog_poll_duration_seconds_sum") == pytest.approx(2.3)


def test_set_jobs_watched(metrics: Metrics) -> None:
    metrics.set_jobs_watched(42)
    assert _value(metrics, "tapis_watchdog_jobs_watched") == 42


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        ({"event": "job_cancelled", "final_status": "CANCELLED"}, "cancelled"),
        ({"event": "job_cancel_unconfirmed"}, "unconfirmed"),
        ({"event": "job_cancel_failed", "http_status": 500}, "failed"),
    ],
)
def test_cancels_by_rule_and_outcome(metrics: Metrics, event: dict[str, Any], outcome: str) -> None:
    metrics.observe_event(event | {"rule": "frontera-12h", "job_uuid": "u-1"})
    metrics.observe_event(event | {"rule": "frontera-12h", "job_uuid": "u-2"})
    labels = {"rule": "frontera-12h", "outcome": outcome}
    assert _value(metrics, "tapis_watchdog_cancels_total", **labels) == 2


def test_requested_and_final_outcomes_are_separate_series(metrics: Metrics) -> None:
    # One cancel: requested, then confirmed. A sum over cancels_total counts it once.
    metrics.observe_event({"event": "job_cancel_requested", "rule": "r", "job_uuid": "u-1"})
    metrics.observe_event({"event": "job_cancel_requested", "rule": "r", "job_uuid": "u-2"})
    metrics.observe_event({"event": "job_cancelled", "rule": "r", "job_uuid": "u-1"})
    assert _value(metrics, "tapis_watchdog_cancels_requested_total", rule="r") == 2
    finals = [
        s.value
        for family in metrics.registry.collect()
        if family.name == "tapis_watchdog_cancels"
        for s in family.samples
    ]
    assert finals == [1]


@pytest.mark.parametrize("why", ["dry_run", "circuit_open", "already_terminal", "exempt"])
def test_skipped_cancels_by_rule_and_why(metrics: Metrics, why: str) -> None:
    metrics.observe_event({"event": "job_cancel_skipped", "why": why, "rule": "r"})
    metrics.observe_event({"event": "job_cancel_skipped", "why": why, "rule": "r"})
    assert _value(metrics, "tapis_watchdog_cancels_skipped_total", rule="r", why=why) == 2
    assert _value(metrics, "tapis_watchdog_cancels_total", rule="r", outcome=why) is None


def test_rule_matches_by_rule(metrics: Metrics) -> None:
    metrics.observe_event({"event": "rule_matched", "rule": "a", "job_uuid": "u-1"})
    metrics.observe_event({"event": "rule_matched", "rule": "a", "job_uuid": "u-2"})
    metrics.observe_event({"event": "rule_matched", "rule": "b", "job_uuid": "u-1"})
    assert _value(metrics, "tapis_watchdog_rule_matches_total", rule="a") == 2
    assert _value(metrics, "tapis_watchdog_rule_matches_total", rule="b") == 1


def test_circuit_breaker_state(metrics: Metrics) -> None:
    metrics.observe_event({"event": "circuit_opened"})
    assert _value(metrics, "tapis_watchdog_circuit_open") == 1
    metrics.observe_event({"event": "circuit_closed"})
    assert _value(metrics, "tapis_watchdog_circuit_open") == 0


def test_odd_events_are_ignored_without_raising(metrics: Metrics, clock: Clock) -> None:
    metrics.observe_event({})
    metrics.observe_event({"event": "watchdog_started", "version": "1"})
    metrics.observe_event({"event": "rule_matched"})
    metrics.observe_event({"event": "job_cancel_skipped", "rule": None})
    metrics.observe_event(_poll_completed(jobs_seen="many", duration_s=None))
    assert _value(metrics, "tapis_watchdog_rule_matches_total", rule="-") == 1
    assert _value(metrics, "tapis_watchdog_cancels_skipped_total", rule="-", why="-") == 1
    assert _value(metrics, "tapis_watchdog_polls_total", outcome="ok") == 1
    assert _value(metrics, "tapis_watchdog_jobs_watched") == 0
    assert metrics.healthy(clock.now)


def test_tapis_calls_by_operation_and_status(metrics: Metrics) -> None:
    metrics.observe_tapis_call("search_jobs", 200, 0.2)
    metrics.observe_tapis_call("search_jobs", 200, 0.4)
    metrics.observe_tapis_call("cancel_job", 409, 0.1)
    metrics.observe_tapis_call("get_status", None, 30.0)
    calls = "tapis_watchdog_tapis_calls_total"
    assert _value(metrics, calls, operation="search_jobs", http_status="200") == 2
    assert _value(metrics, calls, operation="cancel_job", http_status="409") == 1
    assert _value(metrics, calls, operation="get_status", http_status="none") == 1
    latency = "tapis_watchdog_tapis_call_duration_seconds"
    assert _value(metrics, f"{latency}_sum", operation="search_jobs") == pytest.approx(0.6)
    assert _value(metrics, f"{latency}_bucket", operation="search_jobs", le="0.25") == 1
    assert _value(metrics, f"{latency}_count", operation="get_status") == 1


def test_health_needs_a_poll_within_three_intervals(metrics: Metrics, clock: Clock) -> None:
    assert not metrics.healthy()
    metrics.observe_event(_poll_completed())
    assert metrics.healthy()
    assert metrics.healthy(T0 + 179)
    assert not metrics.healthy(T0 + 180)
    metrics.observe_event({"event": "poll_failed"})
    clock.now = T0 + 200
    assert not metrics.healthy()


def test_set_interval_moves_the_health_limit(metrics: Metrics) -> None:
    metrics.observe_event(_poll_completed())
    assert not metrics.healthy(T0 + 200)
    metrics.set_interval(120)
    assert metrics.healthy(T0 + 200)
    assert _value(metrics, "tapis_watchdog_poll_interval_seconds") == 120


@pytest.mark.parametrize("interval", [0, -5.0])
def test_interval_must_be_positive(metrics: Metrics, interval: float) -> None:
    with pytest.raises(ValueError, match="> 0"):
        Metrics(interval)
    with pytest.raises(ValueError, match="> 0"):
        metrics.set_interval(interval)


def test_own_registry_not_the_global_one(metrics: Metrics) -> None:
    second = Metrics(30)
    metrics.observe_event({"event": "circuit_opened"})
    assert second.registry.get_sample_value("tapis_watchdog_circuit_open") == 0
    assert REGISTRY.get_sample_value("tapis_watchdog_circuit_open") is None


def test_metrics_endpoint_serves_the_text_format(metrics: Metrics, server: MetricsServer) -> None:
    metrics.observe_event(_poll_completed())
    metrics.observe_event({"event": "job_cancelled", "rule": "r1"})
    metrics.observe_tapis_call("cancel_job", 200, 0.3)
    status, content_type, body = _get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert all(name.startswith(("tapis_watchdog_", "process_", "python_")) for name in families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[("tapis_watchdog_polls_total", (("outcome", "ok"),))] == 1
    cancelled = (("outcome", "cancelled"), ("rule", "r1"))
    assert samples[("tapis_watchdog_cancels_total", cancelled)] == 1
    assert samples[("tapis_watchdog_jobs_watched", ())] == 7
    assert "tapis_watchdog_build_info" in {s.name for f in families.values() for s in f.samples}


def test_healthz_follows_the_last_good_poll(
    metrics: Metrics, clock: Clock, server: MetricsServer
) -> None:
    assert _get(server, "/healthz")[0] == 503
    metrics.observe_event(_poll_completed())
    status, _, body = _get(server, "/healthz")
    assert (status, body) == (200, "ok\n")
    clock.now += 3 * 60
    assert _get(server, "/healthz")[0] == 503


def test_other_paths_are_not_found(server: MetricsServer) -> None:
    assert _get(server, "/")[0] == 404
    assert _get(server, "/metrics/extra")[0] == 404
    assert _get(server, "/healthzz")[0] == 404
    assert _get(server, "/metrics?name[]=x")[0] == 200


@pytest.mark.parametrize("path", ["/metrics", "/healthz"])
def test_head_has_no_body(server: MetricsServer, path: str) -> None:
    get_status, get_type, _ = _get(server, path)
    status, content_type, body = _get(server, path, method="HEAD")
    assert (status, content_type, body) == (get_status, get_type, "")


def test_healthz_refuses_other_methods(server: MetricsServer) -> None:
    assert _get(server, "/healthz", method="POST")[0] == 405


def _get_raw(server: MetricsServer, path: str, **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def test_gzip_when_asked(metrics: Metrics, server: MetricsServer) -> None:
    metrics.observe_event(_poll_completed())
    response = _get_raw(server, "/metrics", **{"Accept-Encoding": "gzip"})
    assert response.getheader("Content-Encoding") == "gzip"
    text = gzip.decompress(response.body).decode()  # type: ignore[attr-defined]
    assert "tapis_watchdog_polls_total" in text
    plain = _get_raw(server, "/metrics")
    assert plain.getheader("Content-Encoding") is None


def test_openmetrics_by_accept_header(metrics: Metrics, server: MetricsServer) -> None:
    metrics.observe_event({"event": "job_cancelled", "rule": "r1"})
    accept = "application/openmetrics-text; version=1.0.0"
    response = _get_raw(server, "/metrics", Accept=accept)
    assert (response.getheader("Content-Type") or "").startswith("application/openmetrics-text")
    body = response.body.decode()  # type: ignore[attr-defined]
    assert body.endswith("# EOF\n")
    assert "_created" not in body
    families = {f.name: f for f in openmetrics_families(body)}
    assert families["tapis_watchdog_cancels"].samples[0].value == 1


def test_name_filter(metrics: Metrics, server: MetricsServer) -> None:
    path = "/metrics?name[]=tapis_watchdog_circuit_open&name[]=tapis_watchdog_jobs_watched"
    _, _, body = _get(server, path)
    names = {f.name for f in text_string_to_metric_families(body)}
    assert names == {"tapis_watchdog_circuit_open", "tapis_watchdog_jobs_watched"}


def test_process_metrics_and_no_created_series(metrics: Metrics, server: MetricsServer) -> None:
    metrics.observe_event(_poll_completed())
    metrics.observe_event({"event": "job_cancel_requested", "rule": "r1"})
    metrics.observe_tapis_call("cancel_job", 200, 0.3)
    _, _, body = _get(server, "/metrics")
    samples = {s.name for f in text_string_to_metric_families(body) for s in f.samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= samples
    assert "process_start_time_seconds" in samples
    assert "python_info" in samples
    assert [name for name in samples if name.endswith("_created")] == []


def test_more_routes_join_the_listener(server: MetricsServer) -> None:
    def page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [f"page at {environ['PATH_INFO']}".encode()]

    server.routes.mount("/", page)
    server.routes.mount("/api/", page)
    assert _get(server, "/") == (200, "text/html", "page at /")
    assert _get(server, "/api/summary") == (200, "text/html", "page at /api/summary")
    assert _get(server, "/elsewhere")[0] == 404
    assert _get(server, "/healthz")[0] == 503
    assert server.routes.paths == ("/", "/api/", "/healthz", "/metrics")
    with pytest.raises(ValueError, match="already mounted"):
        server.routes.mount("/api/", page)
    with pytest.raises(ValueError, match="starts with"):
        server.routes.mount("api", page)


def test_listens_on_the_configured_address_only(server: MetricsServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    # Bound to 127.0.0.1, not 0.0.0.0: another loopback address of the host is refused.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", server.port), timeout=10).close()


def test_close_stops_listening(metrics: Metrics) -> None:
    srv = start_server("127.0.0.1:0", metrics)
    port = srv.port
    srv.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()


def test_port_in_use_raises_oserror(server: MetricsServer, metrics: Metrics) -> None:
    with pytest.raises(OSError, match="in use"):
        metrics.start_server(f"127.0.0.1:{server.port}")


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9469", ("127.0.0.1", 9469)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9469", ("::1", 9469)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize(
    "listen", ["9469", ":9469", "127.0.0.1:", "host:99999", "::1:9469", "h:x", "[nope]:1"]
)
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|IPv6|Expected"):
        parse_listen(listen)


def test_declared_rules_start_every_per_rule_series_at_zero(metrics: Metrics) -> None:
    # A counter that first appears at 1 is no increase to Prometheus: the first unconfirmed
    # cancel of a rule would never fire its alert.
    metrics.declare_rules(["frontera-12h", "stuck-staging"])
    for rule in ("frontera-12h", "stuck-staging"):
        assert _value(metrics, "tapis_watchdog_rule_matches_total", rule=rule) == 0
        assert _value(metrics, "tapis_watchdog_cancels_requested_total", rule=rule) == 0
        for outcome in ("cancelled", "unconfirmed", "failed"):
            labels = {"rule": rule, "outcome": outcome}
            assert _value(metrics, "tapis_watchdog_cancels_total", **labels) == 0
    metrics.observe_event({"event": "job_cancel_unconfirmed", "rule": "frontera-12h"})
    labels = {"rule": "frontera-12h", "outcome": "unconfirmed"}
    assert _value(metrics, "tapis_watchdog_cancels_total", **labels) == 1
