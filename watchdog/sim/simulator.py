"""The `Simulator`: a simulated Tapis tenant (jobs, users, tokens, faults, request log).

Every public method takes the one lock, so tests and the HTTP threads can share it.
"""

from __future__ import annotations

import copy
import gc
import random
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from watchdog.sim import api, auth, listing, queryfilter
from watchdog.sim.faults import Fault, FaultPlan
from watchdog.sim.fleet import Fleet
from watchdog.sim.live import LiveEngine
from watchdog.sim.schema import STATUSES
from watchdog.sim.store import JobStore
from watchdog.sim.tokens import TokenError, mint_jwt, verify_jwt

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from watchdog.sim.jobstate import SimJob


@dataclass(frozen=True)
class Request:
    """An HTTP request as the simulator sees it (header names in lower case)."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class RequestRecord:
    """One logged request. `status` is 0 when no answer was sent (reset or hang)."""

    method: str
    path: str
    query: str
    params: dict[str, list[str]]
    user: str | None
    status: int
    endpoint: str
    fault: str | None
    time: datetime


@dataclass(frozen=True)
class Outcome:
    """What the HTTP layer must do: wait `delay`, then send `reply`, or `reset`, or `hang`."""

    reply: api.Reply | None
    delay: float = 0.0
    reset: bool = False
    hang: float | None = None


_JOB_ACTIONS = {
    ("GET", ""): "get",
    ("GET", "status"): "status",
    ("GET", "history"): "history",
    ("POST", "cancel"): "cancel",
    ("POST", "sendEvent"): "sendEvent",
    ("POST", "hide"): "hide",
    ("POST", "unhide"): "unhide",
}
_FIXED = {
    ("POST", "/v3/oauth2/tokens"): "tokens",
    ("GET", "/v3/sites"): "sites",
    ("GET", "/v3/tenants"): "tenants",
    ("GET", "/v3/jobs/search"): "search",
    ("POST", "/v3/jobs/search"): "search",
    ("GET", "/v3/jobs/list"): "list",
    ("GET", "/v3/jobs/healthcheck"): "health",
    ("GET", "/v3/jobs/readycheck"): "health",
    ("GET", "/v3/jobs/ready"): "health",
    ("GET", "/v3/jobs/hello"): "health",
}


def classify(method: str, path: str) -> tuple[str, str | None]:
    """The endpoint name of a request, and the job UUID in its path if any."""
    fixed = _FIXED.get((method, path))
    if fixed:
        return fixed, None
    if path.startswith("/v3/jobs/"):
        parts = path[len("/v3/jobs/") :].split("/")
        if len(parts) <= 2:
            action = _JOB_ACTIONS.get((method, parts[1] if len(parts) == 2 else ""))
            if action and parts[0]:
                return action, parts[0]
    return "unknown", None


class Simulator:
    """A simulated Tapis v3 tenant. See the package docstring for the whole API."""

    def __init__(
        self,
        fleet: Fleet | Mapping[str, Any] | None = None,
        *,
        seed: int = 0,
        live: bool = False,
    ) -> None:
        if fleet is None:
            fleet = Fleet()
        elif not isinstance(fleet, Fleet):
            fleet = Fleet.from_dict(fleet)
        self.fleet = fleet
        self.seed = seed
        self._lock = threading.RLock()
        self._offset = timedelta(0)
        self.started = datetime.now(UTC)
        self._key = random.Random(seed).randbytes(32)  # noqa: S311 - test tokens, not security
        self._store = JobStore(
            tenant=fleet.tenant,
            default_owner=fleet.first_user[0],
            start=self.started,
            rng=random.Random(seed),  # noqa: S311 - reproducible fleets
        )
        # Tens of thousands of new containers would trigger full collections over and over.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for partial in fleet.jobs:
                self._store.add(partial, self.started)
        finally:
            if gc_was_enabled:
                gc.enable()
        self.faults = FaultPlan(seed)
        for fault in fleet.faults:
            self.faults.add(fault)
        self._requests: list[RequestRecord] = []
        self._expired_tokens: set[str] = set()
        self.live = live or fleet.live.enabled
        self._live = LiveEngine(fleet.live, self.started, seed, list(fleet.users))

    # ----- facts about the tenant
    @property
    def tenant_id(self) -> str:
        return self.fleet.tenant

    @property
    def users(self) -> dict[str, str]:
        return dict(self.fleet.users)

    @property
    def admins(self) -> tuple[str, ...]:
        return self.fleet.admins

    # ----- the clock
    def now(self) -> datetime:
        """The simulator's clock: real time plus whatever `advance` added."""
        with self._lock:
            return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta | float) -> None:
        """Move the simulator's clock forward (cancels land, tokens expire, live jobs move)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        with self._lock:
            self._offset += timedelta(seconds=seconds)
            self._settle()

    def _settle(self) -> datetime:
        now = datetime.now(UTC) + self._offset
        if self.live:
            self._live.catch_up(self._store, now)
        self._store.settle(now)
        return now

    # ----- jobs
    def uuids(self) -> list[str]:
        """Every job UUID, in creation order."""
        with self._lock:
            self._settle()
            return [j.uuid for j in self._store]

    def shared_with(self, uuid: str) -> frozenset[str]:
        """The users a job is shared with (its `JobShared` rows).

        Raises:
            KeyError: no such job.
        """
        with self._lock:
            return self._get(uuid).shared_with

    def job(self, uuid: str) -> dict[str, Any]:
        """A copy of a job's full record.

        Raises:
            KeyError: no such job.
        """
        with self._lock:
            self._settle()
            return copy.deepcopy(self._get(uuid).full_record())

    def history(self, uuid: str) -> list[dict[str, Any]]:
        """A job's history events as `getJobHistory` sends them, oldest first.

        Raises:
            KeyError: no such job.
        """
        with self._lock:
            self._settle()
            return [e.to_json() for e in self._get(uuid).history]

    def cancels_received(self, uuid: str) -> int:
        with self._lock:
            return self._get(uuid).cancels_received

    def _get(self, uuid: str) -> SimJob:
        job = self._store.get(uuid)
        if job is None:
            msg = f"no job {uuid}"
            raise KeyError(msg)
        return job

    def add_job(self, partial: Mapping[str, Any] | None = None) -> str:
        """Add a job from a partial record (times relative to now); return its UUID.

        Raises:
            ValueError: the partial record is invalid.
        """
        with self._lock:
            now = self._settle()
            saved = self._store.start
            self._store.start = now
            try:
                return self._store.add(dict(partial or {}), now).uuid
            finally:
                self._store.start = saved

    def set_status(self, uuid: str, status: str, condition: str | None = None) -> None:
        """Move a job to `status` now, with history and timestamps, as Tapis would.

        Raises:
            KeyError: no such job. ValueError: not a Tapis status.
        """
        if status not in STATUSES:
            msg = f"unknown job status {status!r}"
            raise ValueError(msg)
        with self._lock:
            now = self._settle()
            job = self._get(uuid)
            job.pending = None
            self._store.set_status(job, status, now, condition)

    def update_job(self, uuid: str, **fields: Any) -> None:
        """Overwrite raw record fields (no history): for tests of odd records.

        Raises:
            KeyError: no such job.
        """
        with self._lock:
            job = self._get(uuid)
            job.record.update(fields)
            job.touch()
            self._store.changed()

    # ----- faults, tokens, log
    def set_fault(self, fault: Fault | None = None, /, **kwargs: Any) -> None:
        """Add a fault: a `Fault`, or its fields (`kind`, `endpoint`, `count`, ...)."""
        self.faults.add(fault if fault is not None else Fault.from_dict(kwargs))

    def clear_faults(self) -> None:
        self.faults.clear()

    def mint_token(self, username: str, ttl: timedelta | float | None = None) -> str:
        """A valid access token for `username` (default lifetime: the fleet's `token_ttl`)."""
        life = self.fleet.token_ttl if ttl is None else ttl
        life = life if isinstance(life, timedelta) else timedelta(seconds=life)
        token, _ = mint_jwt(
            key=self._key, username=username, tenant_id=self.tenant_id, issued=self.now(), ttl=life
        )
        return token

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request served so far (control API excluded), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ----- serving
    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[Any]:
        """Serve over HTTP in background threads; yields the server (`server.base_url`)."""
        from watchdog.sim.server import SimServer  # noqa: PLC0415 - server imports this module

        server = SimServer(self, host, port)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    def handle(self, request: Request) -> Outcome:
        """Answer one Tapis request (faults included) and log it."""
        endpoint, uuid = classify(request.method, request.path)
        latency, fault = (
            (0.0, None)
            if endpoint in {"sites", "tenants", "health"}
            else self.faults.draw(endpoint)
        )
        user: str | None = None
        outcome: Outcome
        if fault is not None and fault.kind == "reset":
            outcome = Outcome(None, latency, reset=True)
        elif fault is not None and fault.kind == "hang":
            outcome = Outcome(None, latency, hang=fault.seconds)
        elif fault is not None and fault.kind == "error":
            message = fault.message or _error_message(endpoint, uuid)
            outcome = Outcome(api.error(fault.status, message), latency)
        elif (fault is not None and fault.kind == "token_expired") or (
            endpoint != "tokens" and self._expired(request)
        ):
            # The caller's token expires now: this and every later request carrying it is
            # refused as Tapis refuses an expired JWT; a new login gives a token that works.
            token = request.headers.get("x-tapis-token")
            if token:
                with self._lock:
                    self._expired_tokens.add(token)
            message = "TAPIS_SECURITY_JWT_EXPIRED The JWT for this request has expired."
            # Plain text, as JWTValidateRequestFilter aborts (see docs/tapis-conformance.md).
            outcome = Outcome(api.plain(401, (fault and fault.message) or message), latency)
        elif fault is not None and fault.kind == "rate_limit":
            reply = api.error(
                429,
                fault.message or "TAPIS_RATE_LIMIT Too many requests; slow down.",
                headers={"Retry-After": str(int(fault.seconds))},
            )
            outcome = Outcome(reply, latency)
        else:
            ttl = (
                timedelta(seconds=fault.seconds)
                if fault is not None and fault.kind == "token_ttl"
                else None
            )
            with self._lock:
                reply, user = self._dispatch(endpoint, uuid, request, ttl)
            if fault is not None and fault.kind == "malformed":
                reply = api.Reply(200, reply.body[: max(1, len(reply.body) // 2)] + b"\x00}")
            elif fault is not None and fault.kind == "envelope":
                reply = api.Reply(200, b"{}")
            outcome = Outcome(reply, latency)
        with self._lock:
            self._requests.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    query=request.query,
                    params=_params(request.query),
                    user=user,
                    status=outcome.reply.status if outcome.reply else 0,
                    endpoint=endpoint,
                    fault=fault.kind if fault else None,
                    time=datetime.now(UTC) + self._offset,
                )
            )
        return outcome

    def _expired(self, request: Request) -> bool:
        token = request.headers.get("x-tapis-token")
        with self._lock:
            return bool(token) and token in self._expired_tokens

    def _dispatch(  # noqa: C901, PLR0911, PLR0912 - the route table of the Tapis endpoints
        self, endpoint: str, uuid: str | None, request: Request, ttl: timedelta | None
    ) -> tuple[api.Reply, str | None]:
        now = self._settle()
        host = request.headers.get("host", "127.0.0.1")
        base_url = f"http://{host}"
        if endpoint == "health":
            return api.health("healthy"), None
        if endpoint == "sites":
            return api.envelope(orjson.dumps([auth.site(base_url)]), "Sites retrieved."), None
        if endpoint == "tenants":
            return api.envelope(
                orjson.dumps([auth.tenant(self.tenant_id, base_url)]), "Tenants retrieved."
            ), None
        if endpoint == "tokens":
            return auth.tokens(self.fleet, self._key, request.body, request.headers, now, ttl)
        if endpoint == "unknown":
            return api.error(404, f"HTTP 404 Not Found: {request.method} {request.path}"), None
        try:
            claims = verify_jwt(request.headers.get("x-tapis-token"), key=self._key, now=now)
        except TokenError as exc:
            return api.plain(401, str(exc)), None
        user = str(claims["tapis/username"])
        caller = api.Caller(user, str(claims["tapis/tenant_id"]), admin=user in self.fleet.admins)
        params = parse_qsl(request.query, keep_blank_values=True)
        store = self._store
        if endpoint == "search" and request.method == "POST":
            reply = api.error(
                400, "JOBS_SEARCH_ERROR SQL-like search bodies are not supported by this simulator."
            )
        elif endpoint in {"search", "list"}:
            reply = listing.search(store, caller, params, listing=endpoint == "list")
        else:
            assert uuid is not None
            if endpoint == "get":
                reply = api.get_job(store, caller, uuid)
            elif endpoint == "status":
                reply = api.get_status(store, caller, uuid)
            elif endpoint == "history":
                paging = queryfilter.request_filter(params, caller)
                reply = (
                    paging
                    if isinstance(paging, api.Reply)
                    else api.get_history(
                        store, caller, uuid, limit=paging.limit or 100, skip=paging.skip
                    )
                )
            elif endpoint == "cancel":
                reply = api.cancel(store, caller, uuid, now, self.fleet.cancel_delay)
            elif endpoint == "sendEvent":
                reply = api.send_event(store, caller, uuid, request.body, now)
            else:
                reply = api.set_visible(store, caller, uuid, visible=endpoint == "unhide")
        return reply, user


def _params(query: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(key, []).append(value)
    return out


def _error_message(endpoint: str, uuid: str | None) -> str:
    if endpoint == "cancel":
        return f"JOBS_QMGR_POST_CANCEL Unable to post the cancel request for job {uuid}."
    return f"TAPIS_INTERNAL_ERROR The {endpoint} request failed unexpectedly."
