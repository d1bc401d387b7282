"""The HTTP layer under tapipy: timeouts, parse-once bodies, raw jobs answers, failure meaning.

tapipy drives `requests`; this module shapes what `requests` does for it and reads what came back,
without importing tapipy (`tapis.py` stays the only module that does):

- `TimeoutAdapter` puts a real timeout on every request (tapipy sets none) and sizes the connection
  pool to the thread limiter; its responses are `ParsedOnceResponse`s, whose body is read in one
  go and parsed once, with orjson, however often tapipy asks;
- `ResponseHook` runs after each answer: it notes the status and hands a successful jobs answer
  back raw (`RawResponseError`), before tapipy turns it into `TapisResult` objects;
- `translate_failure` gives a failed request its place in the `watchdog.errors` tree from the HTTP
  facts alone (the answer's status and `Retry-After`, or why there was no answer);
- `Scrubber` takes the configured secrets, and any JWT, out of an error message.
"""

from __future__ import annotations

import email.utils
import math
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

from watchdog.errors import (
    JobNotAuthorizedError,
    JobNotFoundError,
    JobTerminalError,
    TapisAuthError,
    TapisError,
    TapisRequestError,
    TapisUnavailableError,
)
from watchdog.redaction import register_secret, scrub_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping


_MESSAGE_LIMIT = 500
T = TypeVar("T")


class SendAbortedError(Exception):
    """The hook that runs right before a request leaves failed: the request was not sent."""


class TimeoutAdapter(HTTPAdapter):
    """Fills in a timeout on every request and parses JSON bodies once, with orjson; runs an
    armed `before_send` hook (per thread) right before a request is handed to the socket."""

    def __init__(self, timeout: float, pool_size: int) -> None:
        self._default_timeout = timeout
        self._armed = threading.local()
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size)

    def armed(self, before_send: Callable[[], None] | None, send: Callable[[], T]) -> T:
        """Run `send` (in this thread) with `before_send` called before each request it makes."""
        self._armed.hook = before_send
        try:
            return send()
        finally:
            self._armed.hook = None

    def send(  # type: ignore[override]  # noqa: PLR0917 - requests' own signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        hook: Callable[[], None] | None = getattr(self._armed, "hook", None)
        if hook is not None:
            try:
                hook()
            except Exception as exc:
                raise SendAbortedError(str(exc)) from exc
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
        response.__class__ = ParsedOnceResponse
        return response


class ParsedOnceResponse(requests.Response):
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


class RawResponseError(Exception):
    """Carries a successful jobs response past tapipy's TapisResult conversion (see
    `ResponseHook`)."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(response.status_code)
        self.response = response

    def detach(self) -> requests.Response:
        """The response, with this exception's traceback dropped.

        The traceback's frames inside tapipy refer back to this exception, a cycle that would
        keep the response, and every record parsed from it, until the cyclic collector runs.
        """
        self.__traceback__ = None
        return self.response


class ResponseHook:
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
            raise RawResponseError(response)

    def take_status(self) -> int | None:
        """The status of the last answer this thread received since the last take."""
        status: int | None = getattr(self._local, "status", None)
        self._local.status = None
        return status


class TokenRejectedError(Exception):
    """Internal: Tapis refused the token (401 TAPIS_SECURITY_JWT_*); log in again and retry."""

    def __init__(self, cause: TapisError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Scrubber:
    """Removes the configured secrets, and any credential by its shape, from text to be logged.

    The secrets join the process's registry (`watchdog.redaction`), so events scrub them too;
    a short one is removed only where it is the whole text (see `watchdog.redaction`).
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        for secret in secrets:
            register_secret(secret)

    def scrub(self, text: str) -> str:
        """`text` with every secret, JWT and credential-shaped value replaced by `***`."""
        return scrub_text(text)

    def message(self, message: Any) -> str:
        """An error message as one scrubbed line of at most about 500 characters."""
        return self.scrub(_message_text(message))


def translate_failure(
    operation: str,
    detail: str,
    response: requests.Response | None,
    *,
    cause: BaseException | None,
    job_uuid: str | None,
    login: bool,
) -> Exception:
    """The error for a failed request: `response` is the answer (None: there was none), `cause`
    the exception that stopped the request, `detail` the scrubbed message.

    Returns a `TapisError` subclass, or `TokenRejectedError` when a new login may help.
    """
    if response is None:
        return TapisUnavailableError(
            operation,
            detail or "no answer",
            job_uuid=job_uuid,
            maybe_received=not _never_sent(cause),
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
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            maybe_received=status < 300,
        )
    if login:
        return TapisAuthError(operation, detail, http_status=status)
    return _refusal(operation, detail, status, job_uuid)


def _never_sent(cause: BaseException | None) -> bool:
    """True when the request provably never reached Tapis (the connection was not made, or the
    hook before sending stopped it)."""
    if isinstance(cause, SendAbortedError | requests.exceptions.ConnectTimeout):
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
            return TokenRejectedError(TapisAuthError(operation, detail, **kwargs))
        if job_uuid is not None:
            return JobNotAuthorizedError(operation, detail, **kwargs)
    if status == 404 and job_uuid is not None:
        return JobNotFoundError(operation, detail, **kwargs)
    if status == 409:
        return JobTerminalError(operation, detail, **kwargs)
    return TapisRequestError(operation, detail, **kwargs)


def _message_text(message: Any) -> str:
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    text = " ".join(str(message).split()) if message is not None else ""
    if len(text) > _MESSAGE_LIMIT:
        text = text[:_MESSAGE_LIMIT] + "..."
    return text


def retry_after_seconds(value: str | None) -> float | None:
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
