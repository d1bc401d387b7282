"""The Tapis layer: the only module that imports tapipy.

`TapisClient` wraps one offline-built tapipy client and makes it safe for a daemon:

- a real timeout on every HTTP request (tapipy has none) and a connection pool sized to the thread
  limiter, so concurrent calls never churn "Connection pool is full" (both in `tapis_http.py`);
- every blocking tapipy call runs in a worker thread behind one `anyio.CapacityLimiter`;
- log in with username/password (again, once, when Tapis says the token expired) or use a ready
  token;
- bounded, jittered exponential retries on connection errors, timeouts, 5xx and 429 (honouring a
  capped `Retry-After`);
- tapipy's exceptions translated into the `watchdog.errors` tree, here and nowhere else (from the
  HTTP facts, by `tapis_http.translate_failure`), with any password or token scrubbed;
- plain Python data out: jobs responses are parsed once with orjson, never turned into tapipy's
  per-record `TapisResult` objects (that alone costs more than the HTTP round trip of a page).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
import anyio.to_thread
from tapipy.configuration import Config
from tapipy.errors import BaseTapyException
from tapipy.tapis import Tapis, TapisResult

from watchdog.errors import TapisAuthError, TapisError, TapisUnavailableError
from watchdog.redaction import register_basic_credentials
from watchdog.tapis import envelopes
from watchdog.tapis.data import (
    CallCounter,
    JobStatus,
    OnCall,
    OnError,
    RetryPolicy,
    SearchPage,
    Secret,
    TapisSettings,
    result_of,
    reveal,
)
from watchdog.tapis.transport import (
    RawResponseError,
    ResponseHook,
    Scrubber,
    TimeoutAdapter,
    TokenRejectedError,
    translate_failure,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


__all__ = [
    "HISTORY_PAGE",
    "CallCounter",
    "JobStatus",
    "OnCall",
    "OnError",
    "RetryPolicy",
    "SearchPage",
    "Secret",
    "TapisClient",
    "TapisSettings",
]

T = TypeVar("T")

HISTORY_PAGE = 100
MAX_EVENT_DATA = 16_384
MAX_EVENT_DETAIL = 64


@dataclass(frozen=True, slots=True)
class _Outcome:
    value: Any
    error: BaseTapyException | None
    http_status: int | None
    latency_s: float


class TapisClient:
    """An async, retrying, thread-limited Tapis v3 jobs client for one identity.

    Build it, `await login()`, then call the job methods; `await aclose()` at the end (or use
    `async with`). Every method raises a `watchdog.errors.TapisError` subclass on failure:
    `TapisUnavailableError` after the retries are spent, `TapisAuthError` when the identity cannot
    log in, `TapisRequestError` (or its job-specific subclasses) when Tapis refuses the request.
    """

    def __init__(
        self,
        settings: TapisSettings,
        *,
        retry: RetryPolicy | None = None,
        on_call: OnCall | None = None,
        on_error: OnError | None = None,
    ) -> None:
        self._username = settings.username
        self._password = reveal(settings.password)
        self._access_token = reveal(settings.access_token)
        self._scrubber = Scrubber((self._password, self._access_token, reveal(settings.client_key)))
        # tapipy sends the OAuth client as HTTP Basic: that value is a credential as well.
        register_basic_credentials(settings.client_id, reveal(settings.client_key))
        self._retry = retry or RetryPolicy()
        self._on_call = on_call
        self._on_error = on_error
        self.max_concurrency = max(1, settings.max_concurrency)
        self.limiter = anyio.CapacityLimiter(self.max_concurrency)
        self.api_calls = CallCounter()
        self._login_lock = anyio.Lock()
        self._generation = 0
        self._tapis = Tapis(
            base_url=str(settings.base_url).rstrip("/"),
            tenant_id=settings.tenant_id,
            username=settings.username,
            password=self._password,
            client_id=settings.client_id,
            client_key=reveal(settings.client_key),
            config=Config(retries=0),
            download_latest_specs=False,
            debug_prints=False,
        )
        adapter = TimeoutAdapter(settings.timeout.total_seconds(), self.max_concurrency)
        self._adapter = adapter
        self._tapis.requests_session.mount("http://", adapter)
        self._tapis.requests_session.mount("https://", adapter)
        self._hook = ResponseHook()
        self._tapis.plugin_on_call_post_request_callables.append(self._hook)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        self._tapis.requests_session.close()

    @property
    def api_calls_total(self) -> int:
        """HTTP requests made to Tapis so far, every operation together."""
        return self.api_calls.total

    # -- authentication -------------------------------------------------------------------

    @property
    def identity(self) -> str | None:
        """The user Tapis acts as: the token's `tapis/username` claim, else the configured one."""
        claims = getattr(getattr(self._tapis, "access_token", None), "claims", None)
        user = claims.get("tapis/username") if isinstance(claims, dict) else None
        return user if isinstance(user, str) and user else self._username

    @property
    def can_login(self) -> bool:
        """Whether the client holds a username and password, so it can get a new token itself."""
        return bool(self._username and self._password)

    async def login(self) -> None:
        """Get a token (username/password) or install the configured access token.

        Raises:
            TapisAuthError: wrong credentials, no credentials, or an unusable or expired token.
            TapisUnavailableError: Tapis could not be reached (after retries).
        """
        async with self._login_lock:
            await self._login_locked()

    async def _login_locked(self) -> None:
        if self.can_login:
            await self._call("login", _get_tokens, login=True)
        elif self._access_token:
            self._install_token(self._access_token)
        else:
            raise TapisAuthError("login", "no username/password and no access token configured")
        self._generation += 1

    def _install_token(self, token: str) -> None:
        try:
            with_claims = self._tapis.add_claims_to_token(TapisResult(access_token=token))
        except Exception as exc:
            raise TapisAuthError("login", "the access token is not a readable JWT") from exc
        expires_at: datetime = with_claims.expires_at
        if expires_at <= datetime.now(UTC):
            raise TapisAuthError("login", f"the access token expired at {expires_at.isoformat()}")
        self._tapis.access_token = with_claims

    async def _relogin(self, seen_generation: int) -> None:
        async with self._login_lock:
            # Another call already logged in again while this one waited for the lock.
            if self._generation != seen_generation:
                return
            await self._login_locked()

    # -- jobs operations ------------------------------------------------------------------

    async def search_jobs(
        self,
        *,
        conditions: Mapping[str, str],
        select: Sequence[str],
        limit: int,
        order_by: str | None = None,
        list_type: str = "MY_JOBS",
        compute_total: bool = False,
    ) -> SearchPage:
        """One page of `GET /jobs/search`.

        `conditions` are `<attribute>.<op>` → value pairs such as `{"status.in": "RUNNING,QUEUED"}`;
        they travel as query parameters (tapipy drops undeclared keyword arguments, so they must).
        There is no `startAfter` and no `skip`: Tapis declares `startAfter` an int and never uses
        it, so keyset paging goes through a `uuid.gt` condition (see `watchdog.poll.scan`).

        Raises:
            TapisError: see the class docstring.
        """
        query: dict[str, str] = {
            "limit": str(limit),
            "select": ",".join(select),
            "listType": list_type,
        }
        if order_by is not None:
            query["orderBy"] = order_by
        if compute_total:
            query["computeTotal"] = "true"
        query.update(conditions)
        envelope, requests_made = await self._call_counted(
            "search_jobs",
            lambda t: t.jobs.getJobSearchList(_tapis_query_parameters=query),
            expect=envelopes.search,
        )
        return SearchPage.from_envelope(
            envelope, compute_total=compute_total, requests=requests_made
        )

    async def get_job(self, uuid: str) -> dict[str, Any]:
        """The full job record (`GET /jobs/{uuid}`).

        Raises:
            JobNotFoundError: Tapis does not know the job.
            TapisError: see the class docstring.
        """
        result = result_of(
            await self._call(
                "get_job",
                lambda t: t.jobs.getJob(jobUuid=uuid),
                job_uuid=uuid,
                expect=envelopes.job,
            )
        )
        if not isinstance(result, dict):
            raise TapisUnavailableError("get_job", "the job record is not an object", job_uuid=uuid)
        return result

    async def get_status(self, uuid: str) -> JobStatus:
        """The job's current status (a `str`) with its `condition`.

        Raises:
            JobNotFoundError: Tapis does not know the job.
            TapisError: see the class docstring.
        """
        result = result_of(
            await self._call(
                "get_status",
                lambda t: t.jobs.getJobStatus(jobUuid=uuid),
                job_uuid=uuid,
                expect=envelopes.status,
            )
        )
        status = result.get("status") if isinstance(result, dict) else None
        if not isinstance(status, str):
            raise TapisUnavailableError("get_status", "the answer has no status", job_uuid=uuid)
        condition = result.get("condition")
        return JobStatus(status, condition if isinstance(condition, str) else None)

    async def get_history(self, uuid: str) -> list[dict[str, Any]]:
        """Every history event of the job, oldest first (all pages).

        Raises:
            JobNotFoundError: Tapis does not know the job.
            TapisError: see the class docstring.
        """
        events: list[dict[str, Any]] = []
        skip = 0
        while True:
            page = await self._history_page(uuid, skip)
            events.extend(e for e in page if isinstance(e, dict))
            skip += len(page)
            if len(page) < HISTORY_PAGE:
                return events

    async def _history_page(self, uuid: str, skip: int) -> list[Any]:
        page = result_of(
            await self._call(
                "get_history",
                lambda t: t.jobs.getJobHistory(jobUuid=uuid, limit=HISTORY_PAGE, skip=skip),
                job_uuid=uuid,
                expect=envelopes.history,
            )
        )
        if not isinstance(page, list):
            raise TapisUnavailableError("get_history", "the history is not a list", job_uuid=uuid)
        return page

    async def cancel_job(self, uuid: str, *, before_send: Callable[[], None] | None = None) -> None:
        """Ask Tapis to cancel the job (`POST /jobs/{uuid}/cancel`); it ends later, if at all.

        `before_send` runs in the sending thread right before each try's request is handed to
        the socket (to record that it left); if it raises, that request is not sent and the call
        fails as one that provably never left.

        Raises:
            JobTerminalError: the job already ended (409).
            JobNotAuthorizedError: the identity may not cancel this job.
            JobNotFoundError: Tapis does not know the job.
            TapisError: see the class docstring.
        """
        # Not retried when Tapis may have received it: a cancel sent twice is a decision made
        # twice. The caller checks the job's status before it ever sends the cancel again.
        await self._call(
            "cancel_job",
            lambda t: self._adapter.armed(before_send, lambda: t.jobs.cancelJob(jobUuid=uuid)),
            job_uuid=uuid,
            idempotent=False,
            expect=envelopes.cancel,
        )

    async def send_event(self, uuid: str, data: str, detail: str) -> None:
        """Add a `JOB_USER_EVENT` to the job's history, delivered to its subscribers.

        Raises:
            TapisError: see the class docstring (Tapis refuses events for ended jobs).
        """
        # Tapis's schema: eventData 1-16,384 characters, eventDetail 1-64 of [a-zA-Z0-9_].
        data = data[:MAX_EVENT_DATA] if data.strip() else "tapis-watchdog"
        detail = re.sub(r"[^a-zA-Z0-9_]", "_", detail)[:MAX_EVENT_DETAIL] or "DEFAULT"
        await self._call(
            "send_event",
            lambda t: t.jobs.sendEvent(jobUuid=uuid, eventData=data, eventDetail=detail),
            job_uuid=uuid,
            expect=envelopes.event,
        )

    # -- the one path every request takes ------------------------------------------------

    async def _call(
        self,
        operation: str,
        fn: Callable[[Tapis], T],
        *,
        job_uuid: str | None = None,
        login: bool = False,
        idempotent: bool = True,
        expect: envelopes.Check | None = None,
    ) -> T:
        value, _ = await self._call_counted(
            operation, fn, job_uuid=job_uuid, login=login, idempotent=idempotent, expect=expect
        )
        return value

    async def _call_counted(
        self,
        operation: str,
        fn: Callable[[Tapis], T],
        *,
        job_uuid: str | None = None,
        login: bool = False,
        idempotent: bool = True,
        expect: envelopes.Check | None = None,
    ) -> tuple[T, int]:
        """Run `fn` with retries and one re-login; return its value and the requests it took.

        `expect` checks a successful answer's envelope; one it refuses counts as a lost answer.
        """
        relogged = False
        retry_number = 0
        attempts = 0
        while True:
            generation = self._generation
            attempts += 1
            try:
                value = await self._attempt(
                    operation, fn, job_uuid=job_uuid, login=login, expect=expect
                )
            except TokenRejectedError as rejected:
                if relogged or not self.can_login:
                    self._report(operation, rejected.cause, None)
                    raise TapisAuthError(
                        operation,
                        rejected.cause.detail,
                        http_status=rejected.cause.http_status,
                        job_uuid=job_uuid,
                    ) from rejected
                self._report(operation, rejected.cause, 0.0)
                await self._relogin(generation)
                relogged = True
            except TapisUnavailableError as exc:
                retry_number += 1
                if retry_number >= self._retry.attempts or (exc.maybe_received and not idempotent):
                    self._report(operation, exc, None)
                    raise
                wait = self._retry.wait_before_retry(retry_number, exc.retry_after)
                self._report(operation, exc, wait)
                await anyio.sleep(wait)
            except TapisError as exc:
                self._report(operation, exc, None)
                raise
            else:
                return value, attempts

    async def _attempt(
        self,
        operation: str,
        fn: Callable[[Tapis], T],
        *,
        job_uuid: str | None,
        login: bool,
        expect: envelopes.Check | None = None,
    ) -> T:
        outcome = await anyio.to_thread.run_sync(self._run, fn, limiter=self.limiter)
        self.api_calls.add(operation)
        if self._on_call is not None:
            self._on_call(operation, outcome.http_status, outcome.latency_s)
        if outcome.error is None:
            problem = expect(outcome.value) if expect is not None else None
            if problem is not None:
                # A success status around no usable answer: Tapis may still have acted on it.
                raise TapisUnavailableError(
                    operation,
                    f"{problem} (HTTP {outcome.http_status})",
                    http_status=outcome.http_status,
                    job_uuid=job_uuid,
                    maybe_received=True,
                )
            return outcome.value  # type: ignore[no-any-return]
        raise translate_failure(
            operation,
            self._scrubber.message(outcome.error.message),
            outcome.error.response,
            cause=outcome.error.__context__,
            job_uuid=job_uuid,
            login=login,
        ) from outcome.error

    def _run(self, fn: Callable[[Tapis], Any]) -> _Outcome:
        self._hook.take_status()
        started = time.perf_counter()
        try:
            value = fn(self._tapis)
        except RawResponseError as raw:
            latency = time.perf_counter() - started
            response = raw.detach()
            try:
                value = response.json()
            except ValueError:
                garbled = BaseTapyException("the answer is not valid JSON", response=response)
                return _Outcome(None, garbled, response.status_code, latency)
            return _Outcome(value, None, response.status_code, latency)
        except BaseTapyException as exc:
            answered = exc.response.status_code if exc.response is not None else None
            return _Outcome(None, exc, answered, time.perf_counter() - started)
        return _Outcome(value, None, self._hook.take_status(), time.perf_counter() - started)

    def _report(self, operation: str, error: TapisError, retry_in_s: float | None) -> None:
        if self._on_error is not None:
            self._on_error(operation, error.http_status, error.detail, retry_in_s)


def _get_tokens(tapis: Tapis) -> None:
    previous = tapis.access_token
    tapis.get_tokens()
    # tapipy swallows a token it cannot decode and keeps the old one.
    if tapis.access_token is previous or not hasattr(tapis.access_token, "expires_at"):
        raise BaseTapyException("Tapis answered the login without a usable access token")
