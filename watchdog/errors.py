"""The exceptions tapis-watchdog raises, one tree rooted at `WatchdogError`.

    WatchdogError
    ├── UsageError                  a command line that cannot be run (exit 2)
    ├── InputError                  a file named on the command line (cases, job record) is
    │                               missing or malformed (exit 2)
    ├── ConfigError                 invalid configuration (exit 2)
    ├── ListenError                 an address from the configuration cannot be listened on (exit 2)
    ├── JobRecordError              a job record from Tapis that cannot be read
    ├── StateError                  the SQLite state store cannot be opened or migrated
    │   └── LeaseLostError          a write refused: another instance took the lease over
    └── TapisError                  a Tapis call failed (operation, http_status, detail)
        ├── TapisUnavailableError   connection, timeout, 5xx, 429: retry later (retry_after)
        ├── TapisAuthError          cannot authenticate (exit 3)
        ├── TapisRequestError       any other refusal (4xx)
        │   ├── JobNotFoundError        400 JOBS_JOB_SELECT_UUID_ERROR (Tapis sends no 404)
        │   ├── JobNotAuthorizedError   401 JOBS_MISMATCHED_OWNER
        │   └── JobTerminalError        409 JOBS_JOB_IN_TERMINAL_STATE on cancel
        └── PollError               a poll could not see every active job whole

Every exception carries its fields and builds its own message, so callers never format one.
tapipy's exceptions are translated into these at one place, `watchdog.tapis.client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

# The exit codes of the command line (README's table).
EXIT_OK = 0
EXIT_FAILURE = 1  # something failed: an unexpected error, a refused cancel, a failed case
EXIT_USAGE = 2  # usage error, invalid input file or configuration, an address in use
EXIT_AUTH = 3  # cannot authenticate to Tapis
EXIT_LOOKUP = 4  # a job named on the command line is unknown to Tapis or not visible
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
EXIT_PIPE = 141  # the reader of stdout went away (`| head`), as a shell reports SIGPIPE


class WatchdogError(Exception):
    """The root of every error tapis-watchdog raises on purpose."""


def _problems_message(problems: Sequence[str], source: str | None) -> str:
    head = f"{source}: " if source else ""
    if len(problems) == 1:
        return f"{head}{problems[0]}"
    return f"{head}{len(problems)} errors\n" + "\n".join(f"  {p}" for p in problems)


class UsageError(WatchdogError):
    """The command line cannot be run: a missing argument, a bad option value, options that
    exclude each other. The message says which option and what is expected."""


class InputError(WatchdogError):
    """A file named on the command line (a case file, a saved job record) is missing or
    malformed; `problems` has one line per error, each saying where in the file."""

    def __init__(self, problems: Sequence[str], *, source: str) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__(_problems_message(self.problems, source))


class ConfigError(WatchdogError):
    """The configuration is invalid; `problems` has one line per error, each naming its key path."""

    def __init__(self, problems: Sequence[str], *, source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__(_problems_message(self.problems, source))


class ListenError(WatchdogError):
    """An address the configuration asks to listen on cannot be bound (in use, not local)."""

    def __init__(self, address: str, key: str, detail: str, *, source: str | None = None) -> None:
        self.address = address
        self.key = key
        self.detail = detail
        where = f"{key} in {source}" if source else key
        super().__init__(f"cannot listen on {address} ({where}): {detail}")


class JobRecordError(WatchdogError):
    """A job record is missing a field or has a value that cannot be read."""

    def __init__(self, job_uuid: str | None, detail: str) -> None:
        self.job_uuid = job_uuid
        self.detail = detail
        super().__init__(f"job {job_uuid or '<no uuid>'}: {detail}")


class StateError(WatchdogError):
    """The state store cannot be opened, migrated or written."""


class LeaseLostError(StateError):
    """A write of the active instance was refused: its fencing token is no longer the lease's.

    Another instance took the lease over (this one was paused, cut off or too slow to renew), so
    nothing this instance decided may reach the store or Tapis any more: it becomes standby.
    """

    def __init__(self, holder: str, token: int, detail: str) -> None:
        self.holder = holder
        self.token = token
        super().__init__(f"lease lost by {holder} (fencing token {token}): {detail}")


class TapisError(WatchdogError):
    """A call to Tapis failed."""

    def __init__(
        self,
        operation: str,
        detail: str,
        *,
        http_status: int | None = None,
        job_uuid: str | None = None,
    ) -> None:
        self.operation = operation
        self.detail = detail
        self.http_status = http_status
        self.job_uuid = job_uuid
        status = f" (HTTP {http_status})" if http_status is not None else ""
        job = f" job {job_uuid}" if job_uuid else ""
        super().__init__(f"{operation}{job} failed{status}: {detail}")


class TapisUnavailableError(TapisError):
    """Tapis could not be reached or answered 5xx/429; the call may succeed later."""

    def __init__(
        self,
        operation: str,
        detail: str,
        *,
        http_status: int | None = None,
        job_uuid: str | None = None,
        retry_after: float | None = None,
        maybe_received: bool = False,
    ) -> None:
        super().__init__(operation, detail, http_status=http_status, job_uuid=job_uuid)
        self.retry_after = retry_after
        # True when Tapis may have acted on the request although no usable answer came back
        # (a read timeout, a reset after sending, a garbled success): not safe to repeat blindly.
        self.maybe_received = maybe_received


class TapisAuthError(TapisError):
    """The configured identity cannot log in to Tapis (wrong password, bad token)."""


class TapisRequestError(TapisError):
    """Tapis refused the request (a 4xx other than the cases below)."""


class JobNotFoundError(TapisRequestError):
    """Tapis does not know the job (it answers 400, never 404)."""


class JobNotAuthorizedError(TapisRequestError):
    """The identity may not act on this job (401 JOBS_MISMATCHED_OWNER)."""


class JobTerminalError(TapisRequestError):
    """The job is already FINISHED, FAILED or CANCELLED (409 on cancel)."""


class PollError(TapisError):
    """A poll could not list every active job whole; nothing from it may be acted on."""
