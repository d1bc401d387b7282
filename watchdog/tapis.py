"""The Tapis layer: the only module that imports tapipy.

`TapisClient` wraps one offline-built tapipy client and makes it safe for a daemon:

- a real timeout on every HTTP request (tapipy has none) and a connection pool sized to the thread
  limiter, so concurrent calls never churn "Connection pool is full";
- every blocking tapipy call runs in a worker thread behind one `anyio.CapacityLimiter`;
- log in with username/password (again, once, when Tapis says the token expired) or use a ready
  token;
- bounded, jittered exponential retries on connection errors, timeouts, 5xx and 429 (honouring a
  capped `Retry-After`);
- tapipy's exceptions translated into the `watchdog.errors` tree, here and nowhere else, with any
  password or token scrubbed from the message;
- plain Python data out: jobs responses are parsed once with orjson, never turned into tapipy's
  per-record `TapisResult` objects (that alone costs more than the HTTP round trip of a page).
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, Self, TypeVar

import anyio
import anyio.to_thread
import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter
from tapipy.configuration import Config
from tapipy.errors import BaseTapyException
from tapipy.tapis import Tapis, TapisResult

from watchdog.errors import (
    JobNotAuthorizedError,
    JobNotFoundError,
    JobTerminalError,
    TapisAuthError,
    TapisError,
    TapisRequestError,
    TapisUnavailableError,
)

T = TypeVar("T")

OnCall = Callable[[str, int | None, float], None]
"""`on_call(operation, http_status, latency_s)` after every HTTP request (None: no answer)."""
OnError = Callable[[str, int | None, str, float | None], None]
"""`on_error(operation, http_status, error, retry_in_s)`: after every failed request; retry_in_s is
None when the call gives up."""

HISTORY_PAGE = 100
_MESSAGE_LIMIT = 500
_SCRUBBED = "***"
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*")


class Secret(Protocol):
    """A secret value that does not print itself (pydantic's `SecretStr` is one)."""

    def get_secret_value(self) -> str: ...


class TapisSettings(Protocol):
    """What the client needs from the `tapis:` section of the configuration."""

    @property
    def base_url(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> Secret | None: ...
    @property
    def access_token(self) -> Secret | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def client_key(self) -> Secret | None: ...
    @property
    def timeout(self) -> timedelta: ...
    @property
    def max_concurrency(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a call that failed with a retryable error.

    `attempts` counts the first try. The wait before retry n (1-based) is
    `min(max_wait, initial_wait * 2**(n-1))`, jittered down by up to half; a `Retry-After` from
    Tapis replaces it, capped at `max_wait`.
    """

    attempts: int = 3
    initial_wait: float = 0.5
    max_wait: float = 5.0

    def wait_before_retry(self, retry_number: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(self.max_wait, retry_after))
        base = min(self.max_wait, self.initial_wait * 2.0 ** (retry_number - 1))
        # Jitter spreads the retries of many concurrent calls that failed together.
        return base / 2 + random.uniform(0, base / 2)  # noqa: S311 - not cryptographic


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of a job search: raw records, the total (if asked), the HTTP requests it took."""

    records: list[dict[str, Any]]
    total: int | None
    record_limit: int | None
    requests: int


class JobStatus(str):
    """A job's status as the plain status string, with the job's `condition` (set once it ended)."""

    __slots__ = ("condition",)
    condition: str | None

    def __new__(cls, status: str, condition: str | None = None) -> Self:
        self = super().__new__(cls, status)
        self.condition = condition
        return self


class CallCounter:
    """HTTP requests made to Tapis, per operation and in total."""

    def __init__(self) -> None:
        self.by_operation: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self.by_operation.total()

    def add(self, operation: str) -> None:
        self.by_operation[operation] += 1


class _TimeoutAdapter(HTTPAdapter):
    """Fills in a timeout on every request and parses JSON bodies once, with orjson."""

    def __init__(self, timeout: float, pool_size: int) -> None:
        self._default_timeout = timeout
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size)

    def send(  # type: ignore[override]  # noqa: PLR0917 - requests' own signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=self._default_timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = super().build_response(req, resp)
        response.__class__ = _ParsedOnceResponse
        return response


class _ParsedOnceResponse(requests.Response):
    """tapipy calls `json()` up to three times per response; parse once and remember."""

    @property
    def content(self) -> bytes:
        # requests reads a body in 10 KiB chunks, retaking the GIL for each; under concurrent
        # calls every retake can wait a whole switch interval. One read takes it far fewer times.
        if self._content is False and not self._content_consumed and self.raw is not None:  # type: ignore[comparison-overlap]
            self._content = self.raw.read(decode_content=True) or b""
            self._content_consumed = True
        return super().content

    def json(self, **kwargs: Any) -> Any:
        cached = self.__dict__.get("_watchdog_json", _UNPARSED)
        if cached is _UNPARSED:
            try:
                cached = orjson.loads(self.content)
            except orjson.JSONDecodeError:
                cached = super().json(**kwargs)
            self.__dict__["_watchdog_json"] = cached
        return cached


_UNPARSED = object()


class _RawResponseError(Exception):
    """Carries a successful jobs response past tapipy's TapisResult conversion (see `_raw_hook`)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _ResponseHook:
    """A tapipy post-request plugin callable: notes each answer's status, passes jobs data raw.

    tapipy runs these callables after a request is answered and before it builds TapisResult
    objects; raising here hands the already parsed envelope of a successful jobs call back
    unconverted.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self, operation: Any, response: requests.Response, **_: Any) -> None:
        self._local.status = response.status_code
        if operation.resource_name == "jobs" and response.status_code < 300:
            raise _RawResponseError(response)

    def take_status(self) -> int | None:
        """The status of the last answer this thread received since the last take."""
        status: int | None = getattr(self._local, "status", None)
        self._local.status = None
        return status


@dataclass(frozen=True, slots=True)
class _Outcome:
    value: Any
    error: BaseTapyException | None
    http_status: int | None
    latency_s: float


class _TokenRejectedError(Exception):
    """Internal: Tapis refused the token (401 TAPIS_SECURITY_JWT_*); log in again and retry."""

    def __init__(self, cause: TapisError) -> None:
        super().__init__(str(cause))
        self.cause = cause


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
        self._password = _reveal(settings.password)
        self._access_token = _reveal(settings.access_token)
        self._secrets = tuple(
            s for s in (self._password, self._access_token, _reveal(settings.client_key)) if s
        )
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
            client_key=_reveal(settings.client_key),
            config=Config(retries=0),
            download_latest_specs=False,
            debug_prints=False,
        )
        adapter = _TimeoutAdapter(settings.timeout.total_seconds(), self.max_concurrency)
        self._tapis.requests_session.mount("http://", adapter)
        self._tapis.requests_session.mount("https://", adapter)
        self._hook = _ResponseHook()
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
        start_after: str | None = None,
        list_type: str = "MY_JOBS",
        compute_total: bool = False,
    ) -> SearchPage:
        """One page of `GET /jobs/search`.

        `conditions` are `<attribute>.<op>` → value pairs such as `{"status.in": "RUNNING,QUEUED"}`;
        they travel as query parameters (tapipy drops undeclared keyword arguments, so they must).

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
        if start_after is not None:
            query["startAfter"] = start_after
        if compute_total:
            query["computeTotal"] = "true"
        query.update(conditions)
        envelope, requests_made = await self._call_counted(
            "search_jobs",
            lambda t: t.jobs.getJobSearchList(_tapis_query_parameters=query),
        )
        records = _result(envelope)
        if not isinstance(records, list):
            raise TapisUnavailableError("search_jobs", "the search result is not a list")
        metadata = envelope.get("metadata") if isinstance(envelope, dict) else None
        total = record_limit = None
        if isinstance(metadata, dict):
            raw_total = metadata.get("totalCount")
            if compute_total and isinstance(raw_total, int) and raw_total >= 0:
                total = raw_total
            raw_limit = metadata.get("recordLimit")
            if isinstance(raw_limit, int) and raw_limit > 0:
                record_limit = raw_limit
        return SearchPage(
            records=records,
            total=total,
            record_limit=record_limit,
            requests=requests_made,
        )

    async def get_job(self, uuid: str) -> dict[str, Any]:
        """The full job record (`GET /jobs/{uuid}`).

        Raises:
            JobNotFoundError: Tapis does not know the job.
            TapisError: see the class docstring.
        """
        result = _result(
            await self._call("get_job", lambda t: t.jobs.getJob(jobUuid=uuid), job_uuid=uuid)
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
        result = _result(
            await self._call(
                "get_status", lambda t: t.jobs.getJobStatus(jobUuid=uuid), job_uuid=uuid
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
        page = _result(
            await self._call(
                "get_history",
                lambda t: t.jobs.getJobHistory(jobUuid=uuid, limit=HISTORY_PAGE, skip=skip),
                job_uuid=uuid,
            )
        )
        if not isinstance(page, list):
            raise TapisUnavailableError("get_history", "the history is not a list", job_uuid=uuid)
        return page

    async def cancel_job(self, uuid: str) -> None:
        """Ask Tapis to cancel the job (`POST /jobs/{uuid}/cancel`); it ends later, if at all.

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
            lambda t: t.jobs.cancelJob(jobUuid=uuid),
            job_uuid=uuid,
            idempotent=False,
        )

    async def send_event(self, uuid: str, data: str, detail: str) -> None:
        """Add a `JOB_USER_EVENT` to the job's history, delivered to its subscribers.

        Raises:
            TapisError: see the class docstring (Tapis refuses events for ended jobs).
        """
        await self._call(
            "send_event",
            lambda t: t.jobs.sendEvent(jobUuid=uuid, eventData=data, eventDetail=detail),
            job_uuid=uuid,
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
    ) -> T:
        value, _ = await self._call_counted(
            operation, fn, job_uuid=job_uuid, login=login, idempotent=idempotent
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
    ) -> tuple[T, int]:
        """Run `fn` with retries and one re-login; return its value and the requests it took."""
        relogged = False
        retry_number = 0
        attempts = 0
        while True:
            generation = self._generation
            attempts += 1
            try:
                value = await self._attempt(operation, fn, job_uuid=job_uuid, login=login)
            except _TokenRejectedError as rejected:
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
        self, operation: str, fn: Callable[[Tapis], T], *, job_uuid: str | None, login: bool
    ) -> T:
        outcome = await anyio.to_thread.run_sync(self._run, fn, limiter=self.limiter)
        self.api_calls.add(operation)
        if self._on_call is not None:
            self._on_call(operation, outcome.http_status, outcome.latency_s)
        if outcome.error is None:
            return outcome.value  # type: ignore[no-any-return]
        error = self._translate(operation, outcome.error, job_uuid=job_uuid, login=login)
        raise error from outcome.error

    def _run(self, fn: Callable[[Tapis], Any]) -> _Outcome:
        self._hook.take_status()
        started = time.perf_counter()
        try:
            value = fn(self._tapis)
        except _RawResponseError as raw:
            latency = time.perf_counter() - started
            try:
                value = raw.response.json()
            except ValueError:
                garbled = BaseTapyException("the answer is not valid JSON", response=raw.response)
                return _Outcome(None, garbled, raw.response.status_code, latency)
            return _Outcome(value, None, raw.response.status_code, latency)
        except BaseTapyException as exc:
            answered = exc.response.status_code if exc.response is not None else None
            return _Outcome(None, exc, answered, time.perf_counter() - started)
        return _Outcome(value, None, self._hook.take_status(), time.perf_counter() - started)

    def _translate(
        self, operation: str, exc: BaseTapyException, *, job_uuid: str | None, login: bool
    ) -> Exception:
        response = exc.response
        detail = self._scrub(_message_text(exc.message))
        if response is None:
            return TapisUnavailableError(
                operation,
                detail or "no answer",
                job_uuid=job_uuid,
                maybe_received=not _never_sent(exc.__context__),
            )
        status: int = response.status_code
        if "JOBS_JOB_SELECT_UUID_ERROR" in detail and not login:
            # Tapis answers an unknown uuid with 400, and getJob sometimes with 500.
            return JobNotFoundError(operation, detail, http_status=status, job_uuid=job_uuid)
        if status == 429 or status >= 500 or status < 300:
            # A garbled success is a server fault too: worth another try.
            return TapisUnavailableError(
                operation,
                detail,
                http_status=status,
                job_uuid=job_uuid,
                retry_after=_retry_after(response.headers.get("Retry-After")),
                maybe_received=status < 300,
            )
        if login:
            return TapisAuthError(operation, detail, http_status=status)
        return _refusal(operation, detail, status, job_uuid)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _SCRUBBED)
        # Tokens issued by a login are not in the configuration; any JWT is a credential.
        return _JWT.sub(_SCRUBBED, text)

    def _report(self, operation: str, error: TapisError, retry_in_s: float | None) -> None:
        if self._on_error is not None:
            self._on_error(operation, error.http_status, error.detail, retry_in_s)


def _never_sent(cause: BaseException | None) -> bool:
    """True when the request provably never reached Tapis (the connection was not made)."""
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(cause, requests.exceptions.ConnectionError) and cause.args:
        reason = getattr(cause.args[0], "reason", None)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def _refusal(operation: str, detail: str, status: int, job_uuid: str | None) -> Exception:
    """The error for a 4xx answer to a jobs request (other than 429)."""
    kwargs: dict[str, Any] = {"http_status": status, "job_uuid": job_uuid}
    if status == 401:
        if "JOBS_MISMATCHED_OWNER" in detail:
            return JobNotAuthorizedError(operation, detail, **kwargs)
        if "JWT" in detail.upper():
            return _TokenRejectedError(TapisAuthError(operation, detail, **kwargs))
        if job_uuid is not None:
            return JobNotAuthorizedError(operation, detail, **kwargs)
    if status == 404 and job_uuid is not None:
        return JobNotFoundError(operation, detail, **kwargs)
    if status == 409:
        return JobTerminalError(operation, detail, **kwargs)
    return TapisRequestError(operation, detail, **kwargs)


def _get_tokens(tapis: Tapis) -> None:
    previous = tapis.access_token
    tapis.get_tokens()
    # tapipy swallows a token it cannot decode and keeps the old one.
    if tapis.access_token is previous or not hasattr(tapis.access_token, "expires_at"):
        raise BaseTapyException("Tapis answered the login without a usable access token")


def _reveal(secret: Secret | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _result(envelope: Any) -> Any:
    return envelope.get("result") if isinstance(envelope, dict) else None


def _message_text(message: Any) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    text = " ".join(str(message).split()) if message is not None else ""
    if len(text) > _MESSAGE_LIMIT:
        text = text[:_MESSAGE_LIMIT] + "..."
    return text


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
