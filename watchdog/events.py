"""The product's events: structlog set up once, and one method per event of the contract.

Every event is a flat dict with `timestamp` (UTC ISO-8601), `level` and `event`, plus the fields
product.md names for it. `EventLog` builds that dict, takes every registered secret out of it, and
hands the same final dict to three places: stdout (JSON lines, or a console rendering on a
terminal), the state store's audit trail, and each listener (metrics, notifications). A sink that
fails is reported on stdout and never stops the event from reaching the others.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeAlias
from urllib.parse import quote

import orjson
import structlog

from watchdog.config.model import EVENTS
from watchdog.errors import WatchdogError

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping, Sequence

    from watchdog.state.schema import Silence
    from watchdog.state.store import StateStore

__all__ = [
    "EVENTS",
    "EventLog",
    "JobLike",
    "Listener",
    "configure_logging",
    "redact",
    "register_secret",
]

REDACTED = "***"

Listener: TypeAlias = Callable[[dict[str, Any]], None]
"""A sink for final event dicts (metrics, notifications); what it raises is logged, not raised."""


class JobLike(Protocol):
    """What a job event reads from a job; `watchdog.jobs.Job` has it."""

    @property
    def uuid(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def app_id(self) -> str: ...
    @property
    def status(self) -> str: ...


# -- redaction -------------------------------------------------------------------------------------

_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never let `value` (nor its URL-encoded form) reach any event; empty values are ignored."""
    global _secrets  # noqa: PLW0603 - one registry per process, read on every event
    if not value or not value.strip():
        return
    with _secrets_lock:
        forms = {value, quote(value, safe=""), quote(value)} - set(_secrets)
        # Longest first, so a secret containing another is replaced whole.
        _secrets = tuple(sorted((*_secrets, *forms), key=len, reverse=True))


def _scrub_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:  # noqa: PLR0911 - a return per kind
    if isinstance(value, str):
        return _scrub_text(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
        return _scrub_text(text, secrets) if any(s in text for s in secrets) else value
    # Renderers fall back to str() or repr() for other objects (exceptions, paths, ...).
    for text in (str(value), repr(value)):
        if any(secret in text for secret in secrets):
            return _scrub_text(text, secrets)
    return value


def redact(value: Any) -> Any:
    """`value` with every registered secret replaced by `***`, in nested values too."""
    secrets = _secrets
    return _scrub(value, secrets) if secrets else value


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    secrets = _secrets
    if not secrets:
        return event_dict
    return {key: _scrub(value, secrets) for key, value in event_dict.items()}


# -- structlog configuration -----------------------------------------------------------------------

_stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)


def _add_timestamp(
    logger: Any, name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # EventLog stamps its events itself, so stdout and the audit trail carry the same time.
    if "timestamp" in event_dict:
        return event_dict
    return _stamp(logger, name, event_dict)


def _serialize(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(
    *, json: bool | None = None, stream: TextIO | None = None, level: str = "info"
) -> None:
    """Configure structlog for the process; a second call with the same arguments changes nothing.

    Args:
        json: JSON lines (True) or the console rendering (False); by default JSON unless the
            stream is a terminal.
        stream: where lines go (default: stdout).
        level: the lowest level written (`debug`, `info`, `warning`, `error`).
    """
    out = stream if stream is not None else sys.stdout
    isatty = getattr(out, "isatty", None)
    terminal = callable(isatty) and bool(isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_serialize)
        if (not terminal if json is None else json)
        else structlog.dev.ConsoleRenderer(colors=terminal)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_timestamp,
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level.lower()),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


# -- the event log ---------------------------------------------------------------------------------


def _error_text(error: str | BaseException) -> str:
    if not isinstance(error, BaseException):
        return error
    text = str(error)
    if not text:
        return type(error).__name__
    # Our errors build complete messages; anything else needs its type to be understood.
    return text if isinstance(error, WatchdogError) else f"{type(error).__name__}: {text}"


class EventLog:
    """Emits the product's events to stdout, the audit trail and every listener.

    `dry_run` is the default for job events that do not say; the daemon updates it on reload.
    """

    def __init__(
        self,
        store: StateStore | None = None,
        *,
        listeners: Sequence[Listener] = (),
        dry_run: bool = False,
    ) -> None:
        self.store = store
        self.listeners = list(listeners)
        self.dry_run = dry_run
        self._log = structlog.get_logger("watchdog")

    # -- plumbing ----------------------------------------------------------------------------------

    def emit(self, level: str, event: str, **fields: Any) -> dict[str, Any]:
        """Send one event to every sink and return its final dict (stamped and redacted)."""
        head: dict[str, Any] = {}
        if "timestamp" not in fields:
            _stamp(None, level, head)
        final: dict[str, Any] = redact({**head, "level": level, "event": event, **fields})
        # A closed or broken stdout must not cost the audit trail or the listeners this event.
        with contextlib.suppress(OSError, ValueError):
            getattr(self._log, level)(**final)
        if self.store is not None:
            try:
                self.store.append_event(final)
            except Exception as exc:
                self._sink_failed("audit_write_failed", final, exc)
        for listener in self.listeners:
            try:
                listener(dict(final))
            except Exception as exc:
                self._sink_failed("listener_failed", final, exc, listener=_name_of(listener))
        return final

    def _sink_failed(
        self, name: str, final: Mapping[str, Any], exc: Exception, **context: Any
    ) -> None:
        # Straight to stdout: routing this through emit() could fail the same way again.
        self._log.error(name, failed_event=final.get("event"), error=_error_text(exc), **context)

    def _job(
        self,
        level: str,
        event: str,
        job: JobLike,
        *,
        rule: str,
        reason: str,
        dry_run: bool | None,
        **fields: Any,
    ) -> None:
        self.emit(
            level,
            event,
            job_uuid=job.uuid,
            owner=job.owner,
            app_id=job.app_id,
            status=job.status,
            rule=rule,
            reason=reason,
            dry_run=self.dry_run if dry_run is None else dry_run,
            **fields,
        )

    # -- the daemon --------------------------------------------------------------------------------

    def watchdog_started(
        self, version: str, config_path: str, rule_count: int, dry_run: bool, **extra: Any
    ) -> None:
        self.emit(
            "info",
            "watchdog_started",
            version=version,
            config_path=config_path,
            rule_count=rule_count,
            dry_run=dry_run,
            **extra,
        )

    def watchdog_stopped(self, reason: str, **extra: Any) -> None:
        self.emit("info", "watchdog_stopped", reason=reason, **extra)

    def config_reloaded(self, config_path: str, rule_count: int, **extra: Any) -> None:
        self.emit(
            "info", "config_reloaded", config_path=config_path, rule_count=rule_count, **extra
        )

    def config_reload_failed(
        self, config_path: str, error: str | BaseException, **extra: Any
    ) -> None:
        self.emit(
            "warning",
            "config_reload_failed",
            config_path=config_path,
            error=_error_text(error),
            **extra,
        )

    def poll_completed(
        self,
        jobs_seen: int,
        matches: int,
        cancels: int,
        api_calls: int,
        duration_s: float,
        **extra: Any,
    ) -> None:
        self.emit(
            "info",
            "poll_completed",
            jobs_seen=jobs_seen,
            matches=matches,
            cancels=cancels,
            api_calls=api_calls,
            duration_s=duration_s,
            **extra,
        )

    def poll_failed(
        self, error: str | BaseException, api_calls: int, duration_s: float, **extra: Any
    ) -> None:
        self.emit(
            "warning",
            "poll_failed",
            error=_error_text(error),
            api_calls=api_calls,
            duration_s=duration_s,
            **extra,
        )

    def circuit_opened(self, reason: str, **extra: Any) -> None:
        self.emit("warning", "circuit_opened", reason=reason, **extra)

    def circuit_closed(self, reason: str, **extra: Any) -> None:
        self.emit("info", "circuit_closed", reason=reason, **extra)

    def tapis_error(
        self,
        operation: str,
        http_status: int | None,
        error: str | BaseException,
        retry_in_s: float | None,
        **extra: Any,
    ) -> None:
        self.emit(
            "warning",
            "tapis_error",
            operation=operation,
            http_status=http_status,
            error=_error_text(error),
            retry_in_s=retry_in_s,
            **extra,
        )

    # -- jobs --------------------------------------------------------------------------------------

    def rule_matched(
        self, job: JobLike, *, rule: str, reason: str, dry_run: bool | None = None, **extra: Any
    ) -> None:
        self._job("info", "rule_matched", job, rule=rule, reason=reason, dry_run=dry_run, **extra)

    def job_warned(
        self, job: JobLike, *, rule: str, reason: str, dry_run: bool | None = None, **extra: Any
    ) -> None:
        self._job("warning", "job_warned", job, rule=rule, reason=reason, dry_run=dry_run, **extra)

    def job_cleared(
        self, job: JobLike, *, rule: str, reason: str, dry_run: bool | None = None, **extra: Any
    ) -> None:
        self._job("info", "job_cleared", job, rule=rule, reason=reason, dry_run=dry_run, **extra)

    def job_cancel_requested(
        self, job: JobLike, *, rule: str, reason: str, dry_run: bool | None = None, **extra: Any
    ) -> None:
        self._job(
            "info", "job_cancel_requested", job, rule=rule, reason=reason, dry_run=dry_run, **extra
        )

    def job_cancel_skipped(
        self,
        job: JobLike,
        *,
        rule: str,
        reason: str,
        why: str,
        dry_run: bool | None = None,
        **extra: Any,
    ) -> None:
        fields = {"why": why, **extra}
        self._job(
            "info", "job_cancel_skipped", job, rule=rule, reason=reason, dry_run=dry_run, **fields
        )

    def job_cancelled(
        self,
        job: JobLike,
        *,
        rule: str,
        reason: str,
        final_status: str,
        latency_s: float,
        dry_run: bool | None = None,
        **extra: Any,
    ) -> None:
        fields = {"final_status": final_status, "latency_s": latency_s, **extra}
        self._job("info", "job_cancelled", job, rule=rule, reason=reason, dry_run=dry_run, **fields)

    def job_cancel_unconfirmed(
        self, job: JobLike, *, rule: str, reason: str, dry_run: bool | None = None, **extra: Any
    ) -> None:
        self._job(
            "warning",
            "job_cancel_unconfirmed",
            job,
            rule=rule,
            reason=reason,
            dry_run=dry_run,
            **extra,
        )

    def job_cancel_failed(
        self,
        job: JobLike,
        *,
        rule: str,
        reason: str,
        http_status: int | None,
        error: str | BaseException,
        dry_run: bool | None = None,
        **extra: Any,
    ) -> None:
        fields = {"http_status": http_status, "error": _error_text(error), **extra}
        self._job(
            "warning", "job_cancel_failed", job, rule=rule, reason=reason, dry_run=dry_run, **fields
        )

    # -- silences ----------------------------------------------------------------------------------

    def silence_added(self, silence: Silence, **extra: Any) -> None:
        self.emit("info", "silence_added", **silence_fields(silence), **extra)

    def silence_expired(self, silence: Silence, **extra: Any) -> None:
        """The silence stopped sparing jobs: at its expiry, or `ended_by` someone by hand."""
        fields = silence_fields(silence)
        fields["expired_at"] = _iso(silence.until)
        if silence.ended_by is not None and silence.until < silence.expires_at:
            fields["ended_by"] = silence.ended_by
        self.emit("info", "silence_expired", **fields, **extra)


def silence_fields(silence: Silence) -> dict[str, Any]:
    """A silence as event fields: who spares what, why, and until when."""
    return {
        "silence_id": silence.id,
        "by": silence.created_by,
        "reason": silence.reason,
        "matches": silence.describe(),
        "uuids": list(silence.uuids),
        "owner": silence.owner,
        "app": silence.app,
        "rule": silence.rule,
        "created_at": _iso(silence.created_at),
        "expires_at": _iso(silence.expires_at),
    }


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _name_of(listener: Callable[..., Any]) -> str:
    return str(getattr(listener, "__qualname__", None) or type(listener).__qualname__)
