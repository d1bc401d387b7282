"""The plain data of the Tapis layer: the settings it takes, the answers it gives, its retry policy.

Nothing here talks to Tapis: `tapis.py` builds and returns these (reading answers from the jobs
envelope `{"result": ..., "metadata": ...}` here), and re-exports them, so the rest of the code
imports them from `watchdog.tapis.client`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

from watchdog.errors import TapisUnavailableError

if TYPE_CHECKING:
    from datetime import timedelta

OnCall = Callable[[str, int | None, float], None]
"""`on_call(operation, http_status, latency_s)` after every HTTP request (None: no answer)."""
OnError = Callable[[str, int | None, str, float | None], None]
"""`on_error(operation, http_status, error, retry_in_s)`: after every failed request; retry_in_s is
None when the call gives up."""


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

    @classmethod
    def from_envelope(cls, envelope: Any, *, compute_total: bool, requests: int) -> Self:
        """Read a search answer; `total` only when it was asked for.

        Raises:
            TapisUnavailableError: the answer holds no list of records.
        """
        records = result_of(envelope)
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
        return cls(records=records, total=total, record_limit=record_limit, requests=requests)


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


def reveal(secret: Secret | None) -> str | None:
    """The secret's value, or None."""
    return secret.get_secret_value() if secret is not None else None


def result_of(envelope: Any) -> Any:
    """The `result` of a parsed Tapis answer (None when there is none)."""
    return envelope.get("result") if isinstance(envelope, dict) else None
