"""The status page: `/`, `/jobs/<uuid>`, `/api/summary`, `/api/jobs/<uuid>`, read-only.

`StatusPage.respond(path)` answers one GET from the state store (read-only, its own connection
per request) and the daemon's live state (the last poll's jobs: no Tapis call is ever made for a
page). `StatusPage` is a WSGI application; `mount` puts it on the daemon's one listener
(`service/listener.py`, beside `/metrics` and `/healthz`). Pages are plain HTML and CSS that
refresh themselves; a Content-Security-Policy that allows no script at all backs the escaping of
everything a job's submitter wrote.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import orjson

from watchdog.durations import parse_duration
from watchdog.errors import StateError
from watchdog.events import redact
from watchdog.rules.explain import explain, explain_lines
from watchdog.service.render import (
    render_error_html,
    render_html,
    render_job_html,
    summary_dict,
)
from watchdog.service.summary import build_summary
from watchdog.state.reader import StateReader

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    from watchdog.jobs import Job
    from watchdog.service.listener import Routes, StartResponse
    from watchdog.service.snapshot import LiveState

__all__ = ["Response", "StatusPage", "job_view"]

# No script may run on a page, whatever a job's submitter managed to write into it.
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=31)
HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", _CSP),
)
_HTML = "text/html; charset=utf-8"
_JSON = "application/json"
_JOB_FIELDS = (
    "uuid",
    "name",
    "owner",
    "tenant",
    "app_id",
    "app_version",
    "status",
    "exec_system_id",
    "queue",
    "node_count",
    "tags",
    "created",
    "remote_submitted",
    "remote_started",
    "last_updated",
    "description",
)
_EVENT_DETAILS = ("reason", "why", "final_status", "latency_s", "error", "http_status")


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP answer."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = HEADERS


def _json(data: Any, status: int = HTTPStatus.OK) -> Response:
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    return Response(status, _JSON, body + b"\n")


def _job_dict(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in _JOB_FIELDS}


def job_view(
    reader: StateReader, live: LiveState | None, uuid: str, *, events_since: datetime
) -> dict[str, Any] | None:
    """What the page knows about one job: its verdicts at the last poll (as `explain` says
    them), its decisions and events. None when neither the last poll nor the store knows it."""
    snapshot = live.snapshot if live is not None else None
    job = snapshot.by_uuid.get(uuid) if snapshot is not None else None
    decisions = reader.decisions_for(uuid)
    if job is None and not decisions and not reader.knows_job(uuid):
        return None
    view: dict[str, Any] = {"uuid": uuid, "job": None, "evaluated_at": None, "verdicts": []}
    if job is not None and snapshot is not None and live is not None:
        dry = live.dry_run
        by_rule = {rule.name: rule for rule in snapshot.rules}
        first_match: dict[str, datetime] = {}
        for d in decisions:
            rule = by_rule.get(d.rule)
            if d.first_match_at is None or d.acted_at is not None or rule is None:
                continue
            started = d.first_match_at if dry or rule.dry_run else d.warned_at
            if started is not None:
                first_match[d.rule] = started
        since = None
        if job.status not in {"RUNNING", "QUEUED"}:
            since = reader.status_entry(uuid, job.status)
        told = explain(
            job,
            snapshot.rules,
            snapshot.at,
            since,
            exempt=live.config.safety.exempt,
            first_match=first_match,
            silences=reader.active_silences(snapshot.at),
        )
        view.update(
            job=_job_dict(job),
            evaluated_at=snapshot.at,
            verdicts=[
                {
                    "rule": v.rule,
                    "action": v.action,
                    "matched": v.matched,
                    "reason": v.reason,
                    "details": list(v.details),
                }
                for v in told.verdicts
            ],
            silences=list(told.silences),
            conclusion=told.conclusion,
            explain=explain_lines(told),
        )
    view["decisions"] = [dataclasses.asdict(d) for d in decisions]
    events = reader.events_since(events_since, job_uuid=uuid, limit=500)
    view["events"] = [
        {
            "timestamp": e.get("timestamp"),
            "event": e.get("event"),
            "rule": e.get("rule"),
            "details": "; ".join(
                f"{key}={e[key]}" for key in _EVENT_DETAILS if e.get(key) not in (None, "")
            ),
        }
        for e in events
    ]
    result: dict[str, Any] = redact(view)
    return result


class StatusPage:
    """Answers the page's paths from the store at `store_path` and the daemon's live state."""

    def __init__(
        self,
        store_path: Path,
        live: Callable[[], LiveState],
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store_path = store_path
        self._live = live
        self._clock = clock or (lambda: datetime.now(UTC))

    def mount(self, routes: Routes) -> Routes:
        """Serve the page at `/`, `/jobs/<uuid>` and `/api/...` on `routes`, and return it."""
        for path in ("/", "/index.html", "/jobs/", "/api/"):
            routes.mount(path, self)
        return routes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application: GET (HEAD is the listener's) of any page path."""
        if environ.get("REQUEST_METHOD") != "GET":
            answer = Response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                b"the status page is read-only: use GET or HEAD\n",
                (*HEADERS, ("Allow", "GET, HEAD")),
            )
        else:
            query = environ.get("QUERY_STRING") or ""
            # PATH_INFO arrives decoded as latin-1 (PEP 3333); respond() unquotes a raw target.
            raw = str(environ.get("PATH_INFO") or "/").encode("latin-1").decode("utf-8", "replace")
            answer = self.respond(f"{raw}?{query}" if query else raw, unquoted=True)
        status = HTTPStatus(answer.status)
        start_response(
            f"{status.value} {status.phrase}",
            [
                ("Content-Type", answer.content_type),
                ("Content-Length", str(len(answer.body))),
                *answer.headers,
            ],
        )
        return [answer.body]

    def _refresh_s(self, live: LiveState) -> int:
        return int(min(60.0, max(5.0, live.config.poll.interval.total_seconds())))

    def respond(self, target: str, *, unquoted: bool = False) -> Response:
        """Answer a GET of `target` (path and query; its path already decoded if `unquoted`).

        Never raises: a store that cannot be read is a 503, a bad `since` a 400.
        """
        path, _, query = target.partition("?")
        try:
            return self._route(path if unquoted else unquote(path), parse_qs(query))
        except StateError as exc:
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc), path)
        except ValueError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc), path)

    def _error(self, status: HTTPStatus, message: str, path: str) -> Response:
        if path.startswith("/api/"):
            return _json({"error": message, "status": int(status)}, status)
        return Response(status, _HTML, render_error_html(int(status), message).encode())

    def _window(self, query: Mapping[str, list[str]]) -> timedelta:
        texts = query.get("since")
        if not texts:
            return DEFAULT_WINDOW
        window = parse_duration(texts[-1])
        if window > MAX_WINDOW:
            raise ValueError(f"since: at most {MAX_WINDOW.days}d, got {texts[-1]!r}")
        return window

    def _route(self, path: str, query: Mapping[str, list[str]]) -> Response:
        live = self._live()
        now = self._clock()
        if path in {"/", "/index.html", "/api/summary"}:
            with StateReader.open(self.store_path) as reader:
                summary = build_summary(
                    reader,
                    live.config,
                    live.rules,
                    now=now,
                    since=self._window(query),
                    live=live,
                )
            if path == "/api/summary":
                return _json(summary_dict(summary))
            html = render_html(summary, refresh_s=self._refresh_s(live))
            return Response(HTTPStatus.OK, _HTML, html.encode())
        for prefix in ("/jobs/", "/api/jobs/"):
            if (
                path.startswith(prefix)
                and len(path) > len(prefix)
                and "/" not in path[len(prefix) :]
            ):
                uuid = path[len(prefix) :]
                with StateReader.open(self.store_path) as reader:
                    view = job_view(reader, live, uuid, events_since=now - self._window(query))
                if view is None:
                    return self._error(
                        HTTPStatus.NOT_FOUND, f"no job {uuid} in the last poll or the store", path
                    )
                if prefix == "/api/jobs/":
                    return _json(view)
                html = render_job_html(view, refresh_s=self._refresh_s(live))
                return Response(HTTPStatus.OK, _HTML, html.encode())
        return self._error(HTTPStatus.NOT_FOUND, f"nothing at {path}", path)
