"""The product's events: structlog set up once, and one method per event of the contract.

Every event is a flat dict with `timestamp` (UTC ISO-8601), `level` and `event`, plus the fields
product.md names for it. `EventLog` builds that dict, takes every registered secret out of it, and
hands the same final dict to three places: stdout (JSON lines, or a console rendering on a
terminal; `watchdog.logs`), the state store's audit trail, and each listener (metrics,
notifications). A sink that fails is reported on stdout and never stops the event from reaching
the others. Scrubbing (`watchdog.redaction`) touches only text that came from outside: the event
name, the level, keys and the daemon's own values stay as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import structlog

from watchdog.config.model import EVENTS
from watchdog.errors import WatchdogError
from watchdog.logs import already_scrubbed, configure_logging
from watchdog.redaction import REDACTED, register_secret, scrub, scrub_event

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from watchdog.state.schema import Silence
    from watchdog.state.store import StateStore

__all__ = [
    "EVENTS",
    "REDACTED",
    "EventLog",
    "JobLike",
    "Listener",
    "configure_logging",
    "redact",
    "register_secret",
]

redact = scrub
"""`value` with every secret taken out, in nested values too (see `watchdog.redaction`)."""

_stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)

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
        final = scrub_event({**head, "level": level, "event": event, **fields})
        # A closed or broken stdout must not cost the audit trail or the listeners this event.
        with contextlib.suppress(OSError, ValueError), already_scrubbed():
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
        rule: str | None,
        reason: str,
        dry_run: bool | None,
        **fields: Any,
    ) -> None:
        # The name is what a person recognises a job by (the page, the report, the digest).
        name = getattr(job, "name", None)
        named = {"job_name": name} if isinstance(name, str) and "job_name" not in fields else {}
        self.emit(
            level,
            event,
            job_uuid=job.uuid,
            **named,
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

    def budget_event(self, event: str, **fields: Any) -> None:
        """The budget event of that name (`budget_warned`, `budget_exceeded`, ...)."""
        getattr(self, event)(**fields)

    def budget_warned(self, **fields: Any) -> None:
        """Usage crossed `warn_at`: `budget`, `usage`, `limit`, `unit`, `reason`."""
        self._budget("warning", "budget_warned", **fields)

    def budget_exceeded(self, **fields: Any) -> None:
        """Usage reached the limit: `budget`, `usage`, `limit`, `unit`, `reason`."""
        self._budget("warning", "budget_exceeded", **fields)

    def budget_recovered(self, **fields: Any) -> None:
        """Usage came back below a level: `budget`, `usage`, `limit`, `unit`, `reason`."""
        self._budget("info", "budget_recovered", **fields)

    def _budget(
        self,
        level: str,
        event: str,
        *,
        budget: str,
        usage: float,
        limit: float,
        unit: str,
        reason: str,
        dry_run: bool | None = None,
        **extra: Any,
    ) -> None:
        fields = {"budget": budget, "usage": usage, "limit": limit, "unit": unit}
        dry = self.dry_run if dry_run is None else dry_run
        self.emit(level, event, **fields, reason=reason, dry_run=dry, **extra)

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
        self,
        job: JobLike,
        *,
        rule: str | None,
        reason: str,
        dry_run: bool | None = None,
        **extra: Any,
    ) -> None:
        self._job(
            "info", "job_cancel_requested", job, rule=rule, reason=reason, dry_run=dry_run, **extra
        )

    def job_cancel_skipped(
        self,
        job: JobLike,
        *,
        rule: str | None,
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
        rule: str | None,
        reason: str,
        final_status: str,
        latency_s: float,
        dry_run: bool | None = None,
        **extra: Any,
    ) -> None:
        fields = {"final_status": final_status, "latency_s": latency_s, **extra}
        self._job("info", "job_cancelled", job, rule=rule, reason=reason, dry_run=dry_run, **fields)

    def job_cancel_unconfirmed(
        self,
        job: JobLike,
        *,
        rule: str | None,
        reason: str,
        dry_run: bool | None = None,
        **extra: Any,
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
        rule: str | None,
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
