"""TapisClient against a scripted loopback HTTP server, through real tapipy and requests.

The server here answers whatever each test scripts (hangs, 503s, 429s, token errors, refusals), so
every failure path of the Tapis layer can be driven deterministically. The simulator-backed tests of
the happy paths and of polls live in test_poll.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import jwt
import pytest
from pydantic import SecretStr

from watchdog.errors import (
    JobNotAuthorizedError,
    JobNotFoundError,
    JobTerminalError,
    TapisAuthError,
    TapisError,
    TapisRequestError,
    TapisUnavailableError,
)
from watchdog.poll.scan import poll_jobs
from watchdog.sim import Simulator
from watchdog.tapis.client import JobStatus, RetryPolicy, TapisClient

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.anyio

KEY = "a-test-signing-key-that-is-long-enough-for-hs256"
PASSWORD = "s3cret-Pa55word"
FAST = RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01)


def mint(exp_in: float = 3600, gen: int = 0) -> str:
    claims = {"exp": int(time.time() + exp_in), "tapis/tenant_id": "tacc", "gen": gen}
    return jwt.encode(claims, KEY, algorithm="HS256")


@dataclass
class Seen:
    method: str
    path: str
    query: str
    params: dict[str, str]
    token: str | None
    body: bytes


Reply = tuple[int, dict[str, str], bytes]


def envelope(result: Any, status: int = 200, **metadata: Any) -> Reply:
    doc = {
        "result": result,
        "status": "success" if status < 300 else "error",
        "message": "ok",
        "version": "1.7.1",
        "metadata": metadata or None,
    }
    return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    doc = {"result": None, "status": "error", "message": message, "version": "1.7.1"}
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(doc).encode()


def plain(status: int, text: str) -> Reply:
    return status, {"Content-Type": "text/plain"}, text.encode()


@dataclass
class Server:
    """A loopback Tapis stand-in: `handle(seen)` returns the reply; every request is recorded."""

    handle: Callable[[Seen], Reply]
    requests: list[Seen] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    @contextlib.contextmanager
    def serve(self) -> Iterator[Server]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    parts.path,
                    parts.query,
                    dict(parse_qsl(parts.query)),
                    self.headers.get("X-Tapis-Token"),
                    body,
                )
                with owner.lock:
                    owner.requests.append(seen)
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    status, headers, payload = owner.handle(seen)
                finally:
                    with owner.lock:
                        owner.in_flight -= 1
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _any  # noqa: N815 - http.server's naming

            def log_message(self, *_: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        self.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            yield self
        finally:
            self.release.set()
            httpd.shutdown()
            httpd.server_close()
            thread.join()


@dataclass(frozen=True)
class Settings:
    base_url: str
    tenant_id: str = "tacc"
    username: str | None = "alice"
    password: SecretStr | None = field(default_factory=lambda: SecretStr(PASSWORD))
    access_token: SecretStr | None = None
    client_id: str | None = None
    client_key: SecretStr | None = None
    timeout: timedelta = timedelta(seconds=10)
    max_concurrency: int = 4


@dataclass
class Calls:
    calls: list[tuple[str, int | None, float]] = field(default_factory=list)
    errors: list[tuple[str, int | None, str, float | None]] = field(default_factory=list)

    def client(self, settings: Settings, retry: RetryPolicy = FAST) -> TapisClient:
        return TapisClient(
            settings,
            retry=retry,
            on_call=lambda *a: self.calls.append(a),
            on_error=lambda *a: self.errors.append(a),
        )


class Tapis:
    """A scripted identity: a password login issuing generation-stamped tokens, and job routes."""

    def __init__(self) -> None:
        self.generation = 0
        self.min_generation = 0
        self.logins = 0
        self.routes: dict[tuple[str, str], Callable[[Seen], Reply]] = {}

    def expire_tokens(self) -> None:
        self.min_generation = self.generation + 1

    def __call__(self, seen: Seen) -> Reply:
        if seen.path == "/v3/oauth2/tokens":
            self.logins += 1
            if json.loads(seen.body).get("password") != PASSWORD:
                return error(401, "Invalid username/password combination.")
            self.generation += 1
            token = mint(gen=self.generation)
            access = {"access_token": token, "expires_in": 14400, "jti": str(uuid.uuid4())}
            return envelope({"access_token": access}, status=201)
        claims = jwt.decode(seen.token or "", KEY, algorithms=["HS256"])
        if claims["gen"] < self.min_generation:
            return plain(401, "TAPIS_SECURITY_JWT_EXPIRED The JWT has expired.")
        route = self.routes.get((seen.method, seen.path))
        if route is None:
            return error(400, f"JOBS_JOB_SELECT_UUID_ERROR Unable to select job {seen.path}.")
        return route(seen)


@pytest.fixture
def tapis() -> Tapis:
    return Tapis()


@pytest.fixture
def server(tapis: Tapis) -> Iterator[Server]:
    with Server(tapis).serve() as running:
        yield running


@pytest.fixture
def calls() -> Calls:
    return Calls()


def status_route(status: str = "RUNNING", condition: str | None = None) -> Callable[[Seen], Reply]:
    return lambda _: envelope({"status": status, "condition": condition})


JOB = "3f2a9c1e-0b7d-4e6f-9a8b-1c2d3e4f5a6b-007"
STATUS_PATH = f"/v3/jobs/{JOB}/status"


# -- login -------------------------------------------------------------------------------------


async def test_password_login_sends_the_issued_token(server: Server, tapis: Tapis, calls: Calls):
    tapis.routes["GET", STATUS_PATH] = status_route("QUEUED")
    async with calls.client(Settings(server.base_url)) as client:
        await client.login()
        status = await client.get_status(JOB)
    assert status == "QUEUED"
    assert isinstance(status, JobStatus)
    assert status.condition is None
    token_claims = jwt.decode(server.requests[-1].token or "", KEY, algorithms=["HS256"])
    assert token_claims["gen"] == 1
    assert tapis.logins == 1
    assert [(op, code) for op, code, _ in calls.calls] == [("login", 201), ("get_status", 200)]
    assert client.api_calls.by_operation == {"login": 1, "get_status": 1}
    assert client.api_calls.total == client.api_calls_total == 2


async def test_wrong_password_is_an_auth_error_without_the_password(server: Server, tapis: Tapis):
    settings = Settings(server.base_url, password=SecretStr("wrong-" + PASSWORD))
    async with TapisClient(settings, retry=FAST) as client:
        with pytest.raises(TapisAuthError) as caught:
            await client.login()
    assert caught.value.http_status == 401
    assert "wrong-" not in str(caught.value)
    assert tapis.logins == 1


async def test_ready_access_token_needs_no_login_call(server: Server, tapis: Tapis):
    tapis.routes["GET", STATUS_PATH] = status_route()
    token = mint()
    settings = Settings(
        server.base_url, username=None, password=None, access_token=SecretStr(token)
    )
    async with TapisClient(settings, retry=FAST) as client:
        await client.login()
        assert await client.get_status(JOB) == "RUNNING"
    assert tapis.logins == 0
    assert [r.token for r in server.requests] == [token]


@pytest.mark.parametrize(
    ("token", "words"),
    [("not-a-jwt", "not a readable JWT"), (mint(exp_in=-60), "expired")],
)
async def test_unusable_access_token_is_an_auth_error(server: Server, token: str, words: str):
    settings = Settings(
        server.base_url, username=None, password=None, access_token=SecretStr(token)
    )
    async with TapisClient(settings, retry=FAST) as client:
        with pytest.raises(TapisAuthError, match=words) as caught:
            await client.login()
    assert token not in str(caught.value)
    assert server.requests == []


async def test_no_credentials_is_an_auth_error(server: Server):
    settings = Settings(server.base_url, username=None, password=None)
    async with TapisClient(settings, retry=FAST) as client:
        with pytest.raises(TapisAuthError):
            await client.login()


# -- re-login -----------------------------------------------------------------------------------


async def test_expired_token_logs_in_again_and_retries_once(
    server: Server, tapis: Tapis, calls: Calls
):
    tapis.routes["GET", STATUS_PATH] = status_route()
    async with calls.client(Settings(server.base_url)) as client:
        await client.login()
        tapis.expire_tokens()
        assert await client.get_status(JOB) == "RUNNING"
    assert tapis.logins == 2
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/v3/oauth2/tokens"),
        ("GET", STATUS_PATH),
        ("POST", "/v3/oauth2/tokens"),
        ("GET", STATUS_PATH),
    ]
    assert [(op, code) for op, code, _, _ in calls.errors] == [("get_status", 401)]


async def test_concurrent_callers_share_one_relogin(server: Server, tapis: Tapis):
    tapis.routes["GET", STATUS_PATH] = status_route()
    async with TapisClient(Settings(server.base_url, max_concurrency=8), retry=FAST) as client:
        await client.login()
        tapis.expire_tokens()
        results: list[str] = []

        async def one() -> None:
            results.append(await client.get_status(JOB))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(24):
                    tg.start_soon(one)
    assert results == ["RUNNING"] * 24
    assert tapis.logins == 2


async def test_token_still_refused_after_relogin_is_an_auth_error(server: Server, tapis: Tapis):
    def always_expired(_: Seen) -> Reply:
        return plain(401, "TAPIS_SECURITY_JWT_INVALID The JWT is invalid.")

    tapis.routes["GET", STATUS_PATH] = always_expired
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        with pytest.raises(TapisAuthError) as caught:
            await client.get_status(JOB)
    assert caught.value.http_status == 401
    assert "TAPIS_SECURITY_JWT_INVALID" in caught.value.detail
    assert tapis.logins == 2


async def test_expired_ready_token_cannot_relogin(server: Server, tapis: Tapis):
    tapis.routes["GET", STATUS_PATH] = status_route()
    settings = Settings(
        server.base_url, username=None, password=None, access_token=SecretStr(mint())
    )
    async with TapisClient(settings, retry=FAST) as client:
        await client.login()
        tapis.expire_tokens()
        with pytest.raises(TapisAuthError):
            await client.get_status(JOB)
    assert tapis.logins == 0


# -- error translation ----------------------------------------------------------------------------

CANCEL_PATH = f"/v3/jobs/{JOB}/cancel"


@pytest.mark.parametrize(
    ("reply", "expected", "http_status"),
    [
        (
            error(409, f"JOBS_JOB_IN_TERMINAL_STATE Job {JOB} is in a Terminal state."),
            JobTerminalError,
            409,
        ),
        (
            error(401, "JOBS_MISMATCHED_OWNER The current owner (bob) does not match (alice)."),
            JobNotAuthorizedError,
            401,
        ),
        (error(400, f"JOBS_JOB_SELECT_UUID_ERROR Unable to select {JOB}."), JobNotFoundError, 400),
        (error(500, f"JOBS_JOB_SELECT_UUID_ERROR Unable to select {JOB}."), JobNotFoundError, 500),
        (error(404, "not here"), JobNotFoundError, 404),
        (error(403, "JOBS_FORBIDDEN no"), TapisRequestError, 403),
        (error(400, "JOBS_BAD_INPUT what"), TapisRequestError, 400),
        (error(500, "JOBS_QMGR_POST_CANCEL could not queue"), TapisUnavailableError, 500),
    ],
)
async def test_cancel_refusals_are_translated(
    server: Server,
    tapis: Tapis,
    reply: Reply,
    expected: type[TapisError],
    http_status: int,
):
    tapis.routes["POST", CANCEL_PATH] = lambda _: reply
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        with pytest.raises(TapisError) as caught:
            await client.cancel_job(JOB)
    assert type(caught.value) is expected
    assert caught.value.http_status == http_status
    assert caught.value.job_uuid == JOB
    assert caught.value.operation == "cancel_job"
    assert isinstance(caught.value.__cause__, Exception)
    cancels = [r for r in server.requests if r.path == CANCEL_PATH]
    assert len(cancels) == (3 if expected is TapisUnavailableError else 1)


async def test_accepted_cancel_returns_none(server: Server, tapis: Tapis):
    accepted = {"message": f"JOBS_JOB_CANCEL_ACCEPTED Request to cancel job {JOB} accepted."}
    tapis.routes["POST", CANCEL_PATH] = lambda _: envelope(accepted)
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        assert await client.cancel_job(JOB) is None
    assert [r.method for r in server.requests if r.path == CANCEL_PATH] == ["POST"]


async def test_secrets_never_reach_error_messages(server: Server, tapis: Tapis):
    def leaky(seen: Seen) -> Reply:
        return error(400, f"JOBS_BAD echo password={PASSWORD} token={seen.token}")

    tapis.routes["GET", STATUS_PATH] = leaky
    settings = Settings(server.base_url)
    errors: list[str] = []
    client = TapisClient(settings, retry=FAST, on_error=lambda _o, _s, e, _r: errors.append(e))
    async with client:
        await client.login()
        token = None
        with pytest.raises(TapisRequestError) as caught:
            await client.get_status(JOB)
        token = server.requests[-1].token
    assert token
    for text in (str(caught.value), *errors):
        assert PASSWORD not in text
        assert token not in text
        assert "***" in text


# -- retries and timeouts -------------------------------------------------------------------------


async def test_503_is_retried_with_backoff_then_succeeds(
    server: Server, tapis: Tapis, calls: Calls
):
    replies = [error(503, "busy"), error(503, "busy"), envelope({"status": "RUNNING"})]
    tapis.routes["GET", STATUS_PATH] = lambda _: replies.pop(0)
    async with calls.client(Settings(server.base_url)) as client:
        await client.login()
        assert await client.get_status(JOB) == "RUNNING"
        assert client.api_calls.by_operation["get_status"] == 3
    assert [(op, code) for op, code, _, _ in calls.errors] == [
        ("get_status", 503),
        ("get_status", 503),
    ]
    for *_, retry_in in calls.errors:
        assert retry_in is not None
        assert 0 <= retry_in <= FAST.max_wait
    assert [code for op, code, _ in calls.calls if op == "get_status"] == [503, 503, 200]


async def test_retries_are_bounded(server: Server, tapis: Tapis, calls: Calls):
    tapis.routes["GET", STATUS_PATH] = lambda _: error(502, "bad gateway")
    async with calls.client(Settings(server.base_url)) as client:
        await client.login()
        with pytest.raises(TapisUnavailableError) as caught:
            await client.get_status(JOB)
    assert caught.value.http_status == 502
    assert len([r for r in server.requests if r.path == STATUS_PATH]) == FAST.attempts
    assert [retry for *_, retry in calls.errors][-1] is None


@pytest.mark.parametrize(
    ("retry_after", "reported"),
    [("0", 0.0), ("120", 0.01), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
async def test_429_honours_retry_after_capped(
    server: Server, tapis: Tapis, calls: Calls, retry_after: str, reported: float
):
    replies = [
        error(429, "slow down", {"Retry-After": retry_after}),
        envelope({"status": "RUNNING"}),
    ]
    tapis.routes["GET", STATUS_PATH] = lambda _: replies.pop(0)
    # A long backoff proves the wait came from Retry-After (capped at max_wait), not the backoff.
    policy = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.01)
    async with calls.client(Settings(server.base_url), retry=policy) as client:
        await client.login()
        assert await client.get_status(JOB) == "RUNNING"
    assert calls.errors == [("get_status", 429, "slow down", reported)]


def test_retry_policy_backoff_grows_and_is_capped():
    policy = RetryPolicy(attempts=5, initial_wait=1.0, max_wait=3.0)
    for _ in range(50):
        assert 0.5 <= policy.wait_before_retry(1, None) <= 1.0
        assert 1.0 <= policy.wait_before_retry(2, None) <= 2.0
        assert 1.5 <= policy.wait_before_retry(4, None) <= 3.0
    assert policy.wait_before_retry(1, 2.5) == 2.5
    assert policy.wait_before_retry(1, 99.0) == 3.0


async def test_hanging_server_times_out(calls: Calls):
    def hang(seen: Seen) -> Reply:
        owner.release.wait(30)
        return envelope({"status": "RUNNING"})

    owner = Server(hang)
    with owner.serve() as srv:
        settings = Settings(
            srv.base_url,
            username=None,
            password=None,
            access_token=SecretStr(mint()),
            timeout=timedelta(milliseconds=200),
        )
        policy = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.001)
        async with calls.client(settings, retry=policy) as client:
            await client.login()
            with anyio.fail_after(20), pytest.raises(TapisUnavailableError) as caught:
                await client.get_status(JOB)
    assert caught.value.http_status is None
    assert len(owner.requests) == 2
    assert [(op, code) for op, code, _ in calls.calls] == [("get_status", None)] * 2


async def test_refused_connection_is_unavailable(calls: Calls):
    owner = Server(lambda _: envelope(None))
    with owner.serve() as srv:
        base_url = srv.base_url
    settings = Settings(base_url, username=None, password=None, access_token=SecretStr(mint()))
    async with calls.client(settings) as client:
        await client.login()
        with pytest.raises(TapisUnavailableError) as caught:
            await client.get_status(JOB)
    assert caught.value.http_status is None
    assert len(calls.errors) == FAST.attempts


# -- operations ---------------------------------------------------------------------------------


async def test_search_sends_conditions_and_paging_as_query_parameters(server: Server, tapis: Tapis):
    records = [{"uuid": "a-007", "status": "RUNNING"}]
    tapis.routes["GET", "/v3/jobs/search"] = lambda _: envelope(
        records, totalCount=41, recordLimit=2
    )
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        page = await client.search_jobs(
            conditions={"status.in": "RUNNING,QUEUED", "uuid.gt": "0a", "uuid.lt": "8"},
            select=["uuid", "status"],
            limit=2,
            order_by="uuid(asc)",
            list_type="ALL_JOBS",
            compute_total=True,
        )
    assert page.records == records
    assert page.total == 41
    assert page.record_limit == 2
    assert page.requests == 1
    assert server.requests[-1].params == {
        "status.in": "RUNNING,QUEUED",
        "uuid.gt": "0a",
        "uuid.lt": "8",
        "select": "uuid,status",
        "limit": "2",
        "orderBy": "uuid(asc)",
        "listType": "ALL_JOBS",
        "computeTotal": "true",
    }


async def test_search_without_total_reports_none(server: Server, tapis: Tapis):
    tapis.routes["GET", "/v3/jobs/search"] = lambda _: envelope([], totalCount=-1)
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        page = await client.search_jobs(conditions={}, select=["uuid"], limit=10)
    assert page.records == []
    assert page.total is None
    assert "computeTotal" not in server.requests[-1].params
    assert "startAfter" not in server.requests[-1].params


async def test_history_reads_every_page(server: Server, tapis: Tapis):
    events = [{"event": "JOB_NEW_STATUS", "eventDetail": f"S{i}"} for i in range(130)]

    def history(seen: Seen) -> Reply:
        skip, limit = int(seen.params["skip"]), int(seen.params["limit"])
        return envelope(events[skip : skip + limit])

    tapis.routes["GET", f"/v3/jobs/{JOB}/history"] = history
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        assert await client.get_history(JOB) == events
    assert [r.params["skip"] for r in server.requests if r.path.endswith("/history")] == [
        "0",
        "100",
    ]


async def test_get_job_and_send_event(server: Server, tapis: Tapis):
    record = {"uuid": JOB, "status": "RUNNING", "tags": ["a"], "nested": {"x": [1, {"y": 2}]}}
    tapis.routes["GET", f"/v3/jobs/{JOB}"] = lambda _: envelope(record)
    tapis.routes["POST", f"/v3/jobs/{JOB}/sendEvent"] = lambda _: envelope(None)
    tapis.routes["GET", STATUS_PATH] = status_route("FINISHED", "NORMAL_COMPLETION")
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        assert await client.get_job(JOB) == record
        await client.send_event(JOB, "watchdog: runtime over 12h", "WATCHDOG_WARNING")
        status = await client.get_status(JOB)
    assert (status, status.condition) == ("FINISHED", "NORMAL_COMPLETION")
    sent = next(r for r in server.requests if r.path.endswith("/sendEvent"))
    assert json.loads(sent.body) == {
        "eventData": "watchdog: runtime over 12h",
        "eventDetail": "WATCHDOG_WARNING",
    }


async def test_unknown_job_on_get_job(server: Server):
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        with pytest.raises(JobNotFoundError):
            await client.get_job("no-such-job")


# -- concurrency ----------------------------------------------------------------------------------


async def test_many_concurrent_calls_stay_within_the_limiter_and_pool(
    caplog: pytest.LogCaptureFixture,
):
    def slow(_: Seen) -> Reply:
        time.sleep(0.005)
        return envelope({"status": "RUNNING"})

    owner = Server(slow)
    caplog.set_level(logging.WARNING, logger="urllib3")
    with owner.serve() as srv:
        settings = Settings(
            srv.base_url,
            username=None,
            password=None,
            access_token=SecretStr(mint()),
            max_concurrency=16,
        )
        async with TapisClient(settings, retry=FAST) as client:
            await client.login()
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for _ in range(100):
                        tg.start_soon(client.get_status, JOB)
            assert client.api_calls.total == 100
    assert len(owner.requests) == 100
    assert owner.max_in_flight <= 16
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


async def test_garbled_success_is_retried(server: Server, tapis: Tapis, calls: Calls):
    garbled: Reply = (200, {"Content-Type": "application/json"}, b'{"result": {"stat')
    replies = [garbled, envelope({"status": "RUNNING"})]
    tapis.routes["GET", STATUS_PATH] = lambda _: replies.pop(0)
    async with calls.client(Settings(server.base_url)) as client:
        await client.login()
        assert await client.get_status(JOB) == "RUNNING"
    assert [(op, code) for op, code, _, _ in calls.errors] == [("get_status", 200)]


# -- against the simulator ------------------------------------------------------------------------


@pytest.fixture
def sim_client() -> Iterator[tuple[Simulator, Settings]]:
    sim = Simulator(
        {
            "users": {"alice": PASSWORD, "bob": "bob-pw"},
            "cancel_delay": "1s",
            "jobs": [
                {"status": "RUNNING"},
                {"status": "FINISHED"},
                {"status": "QUEUED", "owner": "bob", "shared_with": ["alice"]},
            ],
        }
    )
    with sim.serve() as server:
        yield sim, Settings(str(server.base_url), tenant_id=sim.tenant_id)


def _sim_job(sim: Simulator, owner: str, status: str) -> str:
    return next(
        u for u in sim.uuids() if sim.job(u)["owner"] == owner and sim.job(u)["status"] == status
    )


async def test_cancel_against_the_simulator(sim_client: tuple[Simulator, Settings]):
    sim, settings = sim_client
    running = _sim_job(sim, "alice", "RUNNING")
    finished = _sim_job(sim, "alice", "FINISHED")
    bobs = _sim_job(sim, "bob", "QUEUED")
    async with TapisClient(settings, retry=FAST) as client:
        await client.login()
        await client.cancel_job(running)
        with pytest.raises(JobTerminalError) as terminal:
            await client.cancel_job(finished)
        with pytest.raises(JobNotAuthorizedError) as owner:
            await client.cancel_job(bobs)
        with pytest.raises(JobNotFoundError) as unknown:
            await client.cancel_job("00000000-0000-0000-0000-000000000000-007")
        sim.advance(5)
        status = await client.get_status(running)
        history = await client.get_history(running)
        record = await client.get_job(running)
    assert (terminal.value.http_status, owner.value.http_status) == (409, 401)
    assert unknown.value.http_status == 400
    assert (status, status.condition) == ("CANCELLED", "CANCELLED_BY_USER")
    assert record["uuid"] == running
    assert record["status"] == "CANCELLED"
    assert history
    assert all(isinstance(e, dict) for e in history)
    assert sim.cancels_received(running) == 1


async def test_wrong_password_against_the_simulator(sim_client: tuple[Simulator, Settings]):
    sim, settings = sim_client
    wrong = Settings(settings.base_url, tenant_id=sim.tenant_id, password=SecretStr("nope"))
    async with TapisClient(wrong, retry=FAST) as client:
        with pytest.raises(TapisAuthError) as caught:
            await client.login()
    assert "nope" not in str(caught.value)


async def test_an_unknown_job_is_job_not_found_whatever_status_each_endpoint_answers(
    sim_client: tuple[Simulator, Settings],
):
    """getJobStatus and getJobHistory answer 404, getJob 500, cancelJob 400: all not found."""
    sim, settings = sim_client
    unknown = "00000000-0000-4000-8000-000000000000-007"
    async with TapisClient(settings, retry=FAST) as client:
        await client.login()
        caught = []
        for call in (client.get_status, client.get_history, client.get_job, client.cancel_job):
            with pytest.raises(JobNotFoundError) as err:
                await call(unknown)
            caught.append(err.value.http_status)
    assert caught == [404, 404, 500, 400]
    assert sum(1 for r in sim.requests if r.endpoint == "get") == 1  # not retried as a 5xx


async def test_identity_comes_from_the_token(sim_client: tuple[Simulator, Settings]):
    sim, settings = sim_client
    async with TapisClient(settings, retry=FAST) as client:
        await client.login()
        assert client.identity == "alice"
    ready = Settings(
        settings.base_url,
        tenant_id=sim.tenant_id,
        username=None,
        password=None,
        access_token=SecretStr(sim.mint_token("bob")),
    )
    async with TapisClient(ready, retry=FAST) as client:
        await client.login()
        assert client.identity == "bob"


async def test_send_event_fits_what_tapis_accepts(sim_client: tuple[Simulator, Settings]):
    """eventData at most 16,384 characters, eventDetail 1-64 of [a-zA-Z0-9_]."""
    sim, settings = sim_client
    running = _sim_job(sim, "alice", "RUNNING")
    async with TapisClient(settings, retry=FAST) as client:
        await client.login()
        await client.send_event(running, "x" * 20_000, "watchdog-warning: rule/long")
        await client.send_event(running, "  ", "")
    events = [e for e in sim.history(running) if e["event"] == "JOB_USER_EVENT"]
    assert [e["eventDetail"] for e in events] == ["watchdog_warning__rule_long", "DEFAULT"]
    assert [len(e["description"]) for e in events] == [16_384, len("tapis-watchdog")]


async def test_a_poll_pages_by_the_servers_collation_and_never_splits_it(
    server: Server, tapis: Tapis
):
    """Tapis's code leaves the order to the database's collation. Under a case-insensitive one
    "B..." sorts between "a..." and "c...": the poll follows the server's order with its cursor,
    sees every job once, and does not cut the key space by byte-order bounds."""
    uuids = [f"{c}{i:07x}-0000-4000-8000-000000000000-007" for c in "aBcD" for i in range(3)]

    def search(seen: Seen) -> Reply:
        after, limit = seen.params.get("uuid.gt"), int(seen.params["limit"])
        rows = sorted(
            (u for u in uuids if after is None or u.lower() > after.lower()), key=str.lower
        )
        page = [{"uuid": u, "status": "RUNNING"} for u in rows[:limit]]
        return envelope(page, recordLimit=limit)

    tapis.routes["GET", "/v3/jobs/search"] = search
    async with TapisClient(Settings(server.base_url), retry=FAST) as client:
        await client.login()
        result = await poll_jobs(
            client,
            statuses=["RUNNING"],
            list_type="MY_JOBS",
            page_size=4,
            fields=["uuid", "status"],
            max_ranges=4,
        )
    assert sorted(j.uuid for j in result.jobs) == sorted(uuids)
    searches = [r for r in server.requests if r.path == "/v3/jobs/search"]
    assert len(searches) == 4  # 12 jobs in pages of 4, and the empty page that ends the scan
    assert not [r for r in searches if "uuid.gte" in r.params or "uuid.lt" in r.params]
    assert result.ranges == 1
