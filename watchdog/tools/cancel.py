"""`tapis-watchdog cancel UUID`: the manual cancel, recorded in the audit trail like the daemon's.

Check the job's status, refuse a terminal job, ask (unless `--yes`), cancel, follow the job until
Tapis shows it terminal or `safety.verify_timeout` passes. When the configuration's state store
exists, the cancel is recorded there as the daemon records its own (`job_cancel_requested`, then
`job_cancelled`, `job_cancel_unconfirmed`, `job_cancel_failed` or `job_cancel_skipped`), with
`rule: null`, `manual: true` and `by` (who ran it), so `history` shows hand cancels too. A store
that does not exist is not created (it would be one the daemon never reads); the command says so.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from watchdog.config.model import Config, load_config
from watchdog.durations import format_duration
from watchdog.errors import (
    EXIT_FAILURE,
    EXIT_LOOKUP,
    EXIT_OK,
    JobNotAuthorizedError,
    JobNotFoundError,
    JobTerminalError,
    StateError,
    TapisError,
    UsageError,
)
from watchdog.events import EventLog, configure_logging
from watchdog.jobs import TERMINAL_STATUSES, Job, parse_job
from watchdog.tools.silence import default_author

if TYPE_CHECKING:
    import argparse

    from watchdog.state.store import StateStore
    from watchdog.tapis.client import TapisClient

FOLLOW_INTERVAL_S = 2.0


def _out(text: str = "", stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def _stdin_is_terminal() -> bool:
    stdin = sys.stdin
    if stdin is None:  # started with stdin closed (`<&-`)
        return False
    try:
        return stdin.isatty()
    except (OSError, ValueError):  # closed or detached
        return False


def cmd_cancel(args: argparse.Namespace) -> int:
    if not args.config:
        raise UsageError("no configuration: pass -c FILE or set TAPIS_WATCHDOG_CONFIG")
    # Before Tapis is asked anything: no one could answer the confirmation.
    if not args.yes and not _stdin_is_terminal():
        raise UsageError("stdin is not a terminal, so no one can confirm: pass --yes")
    config = load_config(Path(args.config))
    audit = HandCancelAudit.open(config)
    try:
        code: int = anyio.run(_cancel, config, args.uuid, args.yes, audit)
    finally:
        audit.close()
    return code


class HandCancelAudit:
    """Writes a hand cancel's events into the state store, when there is one."""

    def __init__(self, store: StateStore | None, by: str) -> None:
        self.store = store
        self.by = by
        self.events: EventLog | None = None
        if store is not None:
            # The person reads the lines printed on stdout; only warnings reach the terminal.
            configure_logging(stream=sys.stderr, level="warning")
            self.events = EventLog(store)

    @classmethod
    def open(cls, config: Config) -> HandCancelAudit:
        from watchdog.state.store import StateStore  # noqa: PLC0415 - only when the command runs

        path = Path(config.state.path)
        if not path.exists():
            _out(f"note: no state store at {path} (state.path): this cancel is not recorded")
            return cls(None, default_author())
        try:
            return cls(StateStore.open(path), default_author())
        except StateError as exc:
            _out(f"note: this cancel is not recorded: {exc}", sys.stderr)
            return cls(None, default_author())

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def _fields(self) -> dict[str, Any]:
        return {
            "rule": None,
            "reason": f"cancelled by hand by {self.by} (tapis-watchdog cancel)",
            "dry_run": False,
            "manual": True,
            "by": self.by,
        }

    def requested(self, job: Job) -> None:
        if self.events is not None:
            self.events.job_cancel_requested(job, **self._fields())

    def confirmed(self, job: Job, final_status: str, latency_s: float) -> None:
        if self.events is not None:
            self.events.job_cancelled(
                job, final_status=final_status, latency_s=round(latency_s, 3), **self._fields()
            )

    def unconfirmed(self, job: Job) -> None:
        if self.events is not None:
            self.events.job_cancel_unconfirmed(job, **self._fields())

    def failed(self, job: Job, exc: TapisError) -> None:
        if self.events is not None:
            self.events.job_cancel_failed(
                job, http_status=exc.http_status, error=exc, **self._fields()
            )

    def skipped(self, job: Job, why: str) -> None:
        if self.events is not None:
            self.events.job_cancel_skipped(job, why=why, **self._fields())


async def _confirmed() -> bool:
    try:
        answer = await anyio.to_thread.run_sync(input, "cancel it? [y/N] ")
    except EOFError:  # the terminal went away before an answer
        _out()
        return False
    return answer.strip().lower() in {"y", "yes"}


async def _cancel(  # noqa: PLR0911 - the seed's flow, one exit per outcome
    config: Config, uuid: str, yes: bool, audit: HandCancelAudit
) -> int:
    from watchdog.tapis.client import TapisClient  # noqa: PLC0415 - only when it runs

    client = TapisClient(config.tapis)
    try:
        await client.login()
        try:
            job = parse_job(await client.get_job(uuid))
        except JobNotFoundError:
            _out(f"job {uuid}: Tapis does not know this job", sys.stderr)
            return EXIT_LOOKUP
        except JobNotAuthorizedError as exc:
            _out(f"job {uuid}: not visible to this identity: {exc.detail}", sys.stderr)
            return EXIT_LOOKUP
        if job.status in TERMINAL_STATUSES:
            _out(f"job {uuid} is already {job.status}: nothing to cancel", sys.stderr)
            return EXIT_FAILURE
        _out(f"job {uuid} ({job.name}) owner {job.owner} app {job.app_id} is {job.status}")
        if not yes and not await _confirmed():
            _out("not cancelled")
            return EXIT_FAILURE
        try:
            await client.cancel_job(uuid)
        except JobTerminalError:
            audit.skipped(job, "already_terminal")
            _out(f"job {uuid} reached a terminal status before the cancel", sys.stderr)
            return EXIT_FAILURE
        except JobNotAuthorizedError as exc:
            audit.failed(job, exc)
            _out(f"job {uuid}: not allowed to cancel it: {exc.detail}", sys.stderr)
            return EXIT_FAILURE
        audit.requested(job)
        return await _follow(client, config, job, audit)
    finally:
        await client.aclose()


async def _follow(client: TapisClient, config: Config, job: Job, audit: HandCancelAudit) -> int:
    started = datetime.now(UTC)
    _out("cancel accepted; following the job until it is terminal")
    with anyio.move_on_after(config.safety.verify_timeout.total_seconds()):
        while True:
            try:
                status: str = await client.get_status(job.uuid)
            except TapisError as exc:
                _out(f"  status check failed: {exc}")
                status = "?"
            if status in TERMINAL_STATUSES:
                took = datetime.now(UTC) - started
                audit.confirmed(job, status, took.total_seconds())
                _out(f"job {job.uuid} is {status} ({format_duration(took)} after the cancel)")
                return EXIT_OK if status == "CANCELLED" else EXIT_FAILURE
            _out(f"  still {status}")
            await anyio.sleep(FOLLOW_INTERVAL_S)
    audit.unconfirmed(job)
    _out(
        f"job {job.uuid} not terminal {format_duration(config.safety.verify_timeout)} "
        "after the cancel",
        sys.stderr,
    )
    return EXIT_FAILURE
