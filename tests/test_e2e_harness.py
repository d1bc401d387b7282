"""The end-to-end harness: a simulated tenant, a configuration file, and the real daemon.

The daemon runs in-process (`build_daemon` + `Daemon.serve`, events collected by a listener) or
as a real subprocess (`python -m watchdog run ...`, JSON lines on stdout). Everything talks to
the simulator over real HTTP through real tapipy. The simulator subclass here also remembers
every token it issued or was shown, so tests can prove that none of them leaks, and can run a
hook after each search page it answers (jobs change status between a poll's pages).

This module holds helpers only; the end-to-end tests are in the other `test_e2e_*` files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import yaml

from watchdog.service.daemon import build_daemon
from watchdog.sim import Simulator
from watchdog.sim.simulator import classify

if TYPE_CHECKING:
    from pathlib import Path

    from watchdog.sim.simulator import Outcome, Request, RequestRecord

USER, PASSWORD = "alice", "alice-e2e-password-7d1f"
BOB, BOB_PASSWORD = "bob", "bob-e2e-password-93ac"
JOB_FIELDS = ("job_uuid", "owner", "app_id", "status", "rule", "reason", "dry_run")
JOB_EVENTS = frozenset(
    {
        "rule_matched",
        "job_warned",
        "job_cleared",
        "job_cancel_requested",
        "job_cancel_skipped",
        "job_cancelled",
        "job_cancel_unconfirmed",
        "job_cancel_failed",
    }
)
# Fast, but not so fast that the simulator's cancels land before the first status check.
FAST_SAFETY: dict[str, Any] = {"verify_timeout": "20s", "resend_after": "10s"}
Event = dict[str, Any]
LONG_RUN: dict[str, Any] = {
    "name": "long-run",
    "match": {"status": "RUNNING"},
    "when": {"runtime_over": "12h"},
    "action": "cancel",
}


class E2ESimulator(Simulator):
    """The simulator, remembering every token it issued or received, with hooks that run after
    each search it answers (`after_search(n)`) and after each request
    (`after_request(endpoint, job_uuid)`)."""

    def __init__(self, fleet: Mapping[str, Any] | None, **kwargs: Any) -> None:
        super().__init__(fleet, **kwargs)
        self.tokens_seen: set[str] = set()
        self.after_search: Callable[[int], None] | None = None
        self.after_request: Callable[[str, str | None], None] | None = None
        self.searches = 0

    def handle(self, request: Request) -> Outcome:
        token = request.headers.get("x-tapis-token")
        if token:
            self.tokens_seen.add(token)
        outcome = super().handle(request)
        if request.path == "/v3/oauth2/tokens" and outcome.reply is not None:
            try:
                body = orjson.loads(outcome.reply.body)
                for kind in ("access_token", "refresh_token"):
                    issued = (body.get("result") or {}).get(kind) or {}
                    if issued.get(kind):
                        self.tokens_seen.add(str(issued[kind]))
            except (orjson.JSONDecodeError, AttributeError):
                pass
        if request.path == "/v3/jobs/search" and self.after_search is not None:
            self.searches += 1
            self.after_search(self.searches)
        if self.after_request is not None:
            self.after_request(*classify(request.method, request.path))
        return outcome


def base_fleet(jobs: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """A fleet with alice (the watchdog's identity) and bob, fast cancels and the given jobs."""
    return {
        "users": {USER: PASSWORD, BOB: BOB_PASSWORD},
        "cancel_delay": 0.3,
        "jobs": [dict(job) for job in jobs],
        **extra,
    }


@dataclass
class Tenant:
    """One simulated tenant, its configuration file and state, for one test."""

    sim: E2ESimulator
    base_url: str
    tmp_path: Path
    config_path: Path = field(init=False)
    state_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config_path = self.tmp_path / "watchdog.yaml"
        self.state_path = self.tmp_path / "state" / "state.db"

    # -- configuration ----------------------------------------------------------------------------

    def write_config(
        self,
        rules: Sequence[Mapping[str, Any]],
        *,
        safety: Mapping[str, Any] | None = None,
        poll: Mapping[str, Any] | None = None,
        password: str = "${E2E_TAPIS_PASSWORD}",
        **extra: Any,
    ) -> Path:
        """Write a configuration in product.md's schema; the password comes from the environment
        (`${E2E_TAPIS_PASSWORD}`, set by `env()` and for in-process runs)."""
        data: dict[str, Any] = {
            "tapis": {
                "base_url": self.base_url,
                "tenant_id": self.sim.tenant_id,
                "username": USER,
                "password": password,
                "timeout": "10s",
            },
            "poll": {"interval": "60s", **(poll or {})},
            "state": {"path": str(self.state_path)},
            "safety": {**FAST_SAFETY, **(safety or {})},
            "rules": [dict(rule) for rule in rules],
            **extra,
        }
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return self.config_path

    def env(self, password: str = PASSWORD) -> dict[str, str]:
        """The environment of a subprocess run: the password variable, nothing from systemd."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "STATE_DIR"))}
        env["E2E_TAPIS_PASSWORD"] = password
        return env

    # -- running the daemon -----------------------------------------------------------------------

    async def run_once(
        self,
        *,
        dry_run: bool = False,
        on_event: Callable[[Event], None] | None = None,
        password: str = PASSWORD,
        expect_code: int = 0,
    ) -> list[Event]:
        """One `run --once` in this process; returns every event it logged, in order."""
        events: list[Event] = []

        def collect(event: Event) -> None:
            events.append(event)
            if on_event is not None:
                on_event(event)

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("E2E_TAPIS_PASSWORD", password)
            daemon, server = build_daemon(
                self.config_path, dry_run=dry_run, once=True, listeners=(collect,)
            )
        try:
            code = await daemon.serve()
        finally:
            daemon.store.close()
            if server is not None:
                server.close()
        assert code == expect_code
        return events

    def command(
        self, *args: str, password: str = PASSWORD, timeout: float = 45
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m watchdog ARGS` as a real subprocess (stdout is a pipe: JSON lines)."""
        return subprocess.run(  # noqa: PLW1510 - callers check the exit code themselves
            [sys.executable, "-m", "watchdog", *args],
            capture_output=True,
            text=True,
            env=self.env(password),
            timeout=timeout,
            cwd=self.tmp_path,
        )

    def popen_run(self, *args: str) -> subprocess.Popen[str]:
        """Start `python -m watchdog run -c CONFIG ARGS`; the caller reads stdout and ends it."""
        return subprocess.Popen(
            [sys.executable, "-m", "watchdog", "run", "-c", str(self.config_path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            cwd=self.tmp_path,
        )

    def uuid(self, name: str) -> str:
        """The UUID of the simulator's job with this name."""
        found = [u for u in self.sim.uuids() if self.sim.job(u)["name"] == name]
        assert len(found) == 1, (name, found)
        return found[0]

    def uuids(self, *names: str) -> set[str]:
        return {self.uuid(name) for name in names}

    # -- the simulator's request log --------------------------------------------------------------

    def posts(self, endpoint: str) -> list[str]:
        """Job UUIDs of the POST requests to a job endpoint (`cancel`, `sendEvent`), in order."""
        return [
            _job_of(r) for r in self.sim.requests if r.method == "POST" and r.endpoint == endpoint
        ]

    def gets(self, endpoint: str) -> list[str]:
        """Job UUIDs of the GET requests to a job endpoint (`status`, `history`, `get`)."""
        return [
            _job_of(r) for r in self.sim.requests if r.method == "GET" and r.endpoint == endpoint
        ]


def _job_of(record: RequestRecord) -> str:
    return record.path.removeprefix("/v3/jobs/").split("/")[0]


TenantFactory = Callable[..., Tenant]


@contextmanager
def tenants(tmp_path: Path) -> Iterator[TenantFactory]:
    """Yields `start(fleet_dict) -> Tenant`: a served `E2ESimulator`, stopped on exit.

    Each test file wraps this in its own `tenant` fixture.
    """
    with ExitStack() as stack:

        def start(fleet: Mapping[str, Any], **kwargs: Any) -> Tenant:
            sim = E2ESimulator(fleet, **kwargs)
            server = stack.enter_context(sim.serve())
            return Tenant(sim, str(server.base_url), tmp_path)

        yield start


# -- reading events ------------------------------------------------------------------------------


def parse_lines(stdout: str) -> list[Event]:
    """The JSON events of a subprocess's stdout; every line must be one JSON object."""
    events = []
    for line in stdout.splitlines():
        if line.strip():
            event = json.loads(line)
            assert isinstance(event, dict), line
            events.append(event)
    return events


def named(events: Sequence[Event], name: str, **fields: Any) -> list[Event]:
    """The events called `name` whose fields equal the given ones."""
    return [
        e
        for e in events
        if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
    ]


def one(events: Sequence[Event], name: str, **fields: Any) -> Event:
    """The single event called `name` with these fields; fails if there is none or several."""
    found = named(events, name, **fields)
    assert len(found) == 1, (name, fields, [_brief(e) for e in events])
    return found[0]


def by_job(events: Sequence[Event], name: str) -> dict[str, list[Event]]:
    """Events called `name`, grouped by job UUID."""
    out: dict[str, list[Event]] = {}
    for event in named(events, name):
        out.setdefault(str(event["job_uuid"]), []).append(event)
    return out


def jobs_of(events: Sequence[Event], name: str, **fields: Any) -> set[str]:
    """The UUIDs of the jobs with at least one such event."""
    return {str(e["job_uuid"]) for e in named(events, name, **fields)}


# product.md's Events table: the fields each event carries beyond the common ones.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "watchdog_started": ("version", "config_path", "rule_count", "dry_run"),
    "watchdog_stopped": ("reason",),
    "poll_completed": ("jobs_seen", "matches", "cancels", "api_calls", "duration_s"),
    "poll_failed": ("error",),
    "job_cancel_skipped": ("why",),
    "job_cancelled": ("final_status", "latency_s"),
    "job_cancel_failed": ("http_status", "error"),
    "circuit_opened": ("reason",),
    "circuit_closed": ("reason",),
    "budget_warned": ("budget", "usage", "limit", "unit", "reason"),
    "budget_exceeded": ("budget", "usage", "limit", "unit", "reason"),
    "budget_recovered": ("budget", "usage", "limit", "unit", "reason"),
    "tapis_error": ("operation", "http_status", "error", "retry_in_s"),
    "silence_added": ("silence_id", "by", "reason", "matches", "created_at", "expires_at"),
    "silence_expired": ("silence_id", "by", "reason", "matches", "expires_at", "expired_at"),
}
SKIP_WHY = frozenset(
    {"exempt", "dry_run", "circuit_open", "already_terminal", "not_authorized", "silenced"}
)


def check_event_fields(events: Sequence[Event]) -> None:
    """Every event has timestamp/level/event and its own fields from product.md's Events table;
    job events have the job fields."""
    for event in events:
        assert {"timestamp", "level", "event"} <= event.keys(), event
        assert str(event["timestamp"]).endswith(("Z", "+00:00")), event
        missing = [k for k in EVENT_FIELDS.get(event["event"], ()) if k not in event]
        assert not missing, (missing, event)
        if event["event"] == "job_cancel_skipped":
            assert event["why"] in SKIP_WHY, event
            if event["why"] == "silenced":
                named_fields = ("silence_id", "silenced_by", "silence_reason", "silenced_until")
                assert all(event.get(k) for k in named_fields), event
        if event["event"] in JOB_EVENTS:
            missing = [k for k in JOB_FIELDS if k not in event]
            assert not missing, (missing, event)
            assert isinstance(event["reason"], str), event
            assert event["reason"], event
            assert isinstance(event["dry_run"], bool), event


def _brief(event: Event) -> str:
    parts = [str(event.get("event"))]
    parts += [f"{key}={event[key]}" for key in ("job_uuid", "rule", "why") if key in event]
    return " ".join(parts)
