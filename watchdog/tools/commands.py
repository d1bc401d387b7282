"""The subcommands run, check and explain (cancel, history, sim, demo, test-rules live apart)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio

from watchdog.config.fields import compact_duration
from watchdog.config.model import Config, OfflineConfig, load_config, load_offline_config
from watchdog.durations import format_duration
from watchdog.errors import (
    EXIT_FAILURE,
    EXIT_LOOKUP,
    EXIT_OK,
    InputError,
    JobNotAuthorizedError,
    JobNotFoundError,
    JobRecordError,
    TapisError,
    UsageError,
)
from watchdog.jobs import Job, parse_job, status_entered_from_history
from watchdog.rules.budgets import compile_budgets, describe_budget
from watchdog.rules.evaluate import CompiledRule, compile_rules, describe_rule
from watchdog.rules.explain import explain, explain_lines
from watchdog.state.files import check_state_path
from watchdog.tools.silence import stored_silences

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from watchdog.state.schema import Silence


def _config_path(args: argparse.Namespace) -> Path:
    if not args.config:
        raise UsageError("no configuration: pass -c FILE or set TAPIS_WATCHDOG_CONFIG")
    return Path(args.config)


def _out(text: str = "", stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


# ---------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from watchdog.service.daemon import run_daemon  # noqa: PLC0415 - keeps `check` light

    return run_daemon(_config_path(args), dry_run=args.dry_run, once=args.once)


# ---------------------------------------------------------------------- check
def cmd_check(args: argparse.Namespace) -> int:
    path = _config_path(args)
    config = load_offline_config(path)
    check_state_path(config.state.path, source=str(path))
    rules = compile_rules(config.rules)
    safety = config.safety
    _out(f"{path}: valid")
    if config.tapis is not None:
        _out(f"  tapis: {config.tapis.base_url} tenant {config.tapis.tenant_id}")
    else:
        # Only the commands that log in need these; the environment they run in must have them.
        _out("  tapis: not resolved here, needed by run, cancel and explain UUID:")
        for note in config.tapis_deferred:
            _out(f"    {note}")
    _out(
        f"  poll: every {format_duration(config.poll.interval)}, {config.poll.list_type}, "
        f"pages of {config.poll.page_size}"
    )
    _out(f"  state: {config.state.path}")
    _out(
        f"  safety: dry_run={str(safety.dry_run).lower()}, "
        f"max {safety.max_cancels_per_poll}/poll and {safety.max_cancels_per_hour}/hour, "
        f"verify {format_duration(safety.verify_timeout)}, "
        f"re-send after {format_duration(safety.resend_after)}, "
        f"silences up to {compact_duration(safety.max_silence)}"
    )
    if config.metrics is not None:
        _out(f"  listener: http://{config.metrics.listen}/ (status page, /metrics, /healthz)")
    for index, target in enumerate(config.notify, start=1):
        parts = [f"events {', '.join(target.events)}"] if target.events else []
        if target.digest is not None:
            zone = target.timezone or "local time"
            skip = ", skipped on a quiet day" if target.skip_empty else ""
            parts.append(f"daily digest at {target.digest:%H:%M} {zone}{skip}")
        _out(f"  notify #{index} {target.display_url}: {'; '.join(parts)}")
    _out(f"  rules ({len(rules)}):")
    for rule in rules:
        _out(f"    {describe_rule(rule)}")
    if config.budgets:
        _out(f"  budgets ({len(config.budgets)}):")
        for budget in compile_budgets(config.budgets):
            _out(f"    {describe_budget(budget)}")
    return 0


# ---------------------------------------------------------------------- explain
def _explain_job(
    job: Job,
    config: OfflineConfig,
    rules: Sequence[CompiledRule],
    now: datetime,
    status_since: datetime | None,
    *,
    silences: Sequence[Silence] = (),
) -> None:
    # The daemon's own decision, as on a job seen for the first time now; the status page's job
    # view says it in the same words.
    told = explain(job, rules, now, status_since, exempt=config.safety.exempt, silences=silences)
    for line in explain_lines(told):
        _out(line)


def _parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"--now: expected an ISO-8601 time, got {text!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_input(path: str, kind: str) -> str:
    """The text of a file named on the command line.

    Raises:
        InputError: it is missing, unreadable or not UTF-8 (the message says which, and where).
    """
    source = f"{kind} {path}"
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(["file not found"], source=source) from None
    except IsADirectoryError:
        raise InputError(["is a directory, not a file"], source=source) from None
    except OSError as exc:
        raise InputError([f"cannot read it: {exc.strerror or exc}"], source=source) from None
    except (UnicodeError, ValueError):
        raise InputError(["not UTF-8 text"], source=source) from None


def _load_job_file(path: str) -> dict[str, Any]:
    source = f"job file {path}"
    text = read_input(path, "job file")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError([f"not JSON: {exc}"], source=source) from None
    # A saved Tapis answer has the job under "result"; a bare record is accepted too.
    if isinstance(data, dict) and isinstance(data.get("result"), dict):
        data = data["result"]
    if not isinstance(data, dict):
        raise InputError(["expected a JSON object (a job record)"], source=source)
    return data


def cmd_explain(args: argparse.Namespace) -> int:
    if not args.uuids and not args.job_file:
        raise UsageError("give at least one UUID or --job-file")
    path = _config_path(args)
    now = _parse_now(args.now)
    jobs = []
    for job_path in args.job_file:
        try:
            jobs.append(parse_job(_load_job_file(job_path)))
        except JobRecordError as exc:
            raise InputError([exc.detail], source=f"job file {job_path}") from exc
    if not args.uuids:
        offline = load_offline_config(path)
        rules = compile_rules(offline.rules)
        silences = stored_silences(offline, now)
        for job in jobs:
            _explain_job(job, offline, rules, now, None, silences=silences)
        return EXIT_OK
    config = load_config(path)
    rules = compile_rules(config.rules)
    silences = stored_silences(config, now)
    for job in jobs:
        _explain_job(job, config, rules, now, None, silences=silences)
    code: int = anyio.run(_explain_remote, config, rules, args.uuids, now, silences)
    return code


async def _explain_remote(
    config: Config,
    rules: Sequence[CompiledRule],
    uuids: Sequence[str],
    now: datetime,
    silences: Sequence[Silence],
) -> int:
    """Explain each job fetched from Tapis. Returns 0, or 4 when a job is unknown to Tapis or
    not visible to this identity, or 1 when a record could not be read (the others are still
    explained)."""
    from watchdog.tapis.client import TapisClient  # noqa: PLC0415 - only remote explains need tapipy

    client = TapisClient(config.tapis)
    code = EXIT_OK
    try:
        await client.login()
        for uuid in uuids:
            try:
                job = parse_job(await client.get_job(uuid))
            except JobNotFoundError:
                _out(f"job {uuid}: Tapis does not know this job", sys.stderr)
                code = EXIT_LOOKUP
                continue
            except JobNotAuthorizedError as exc:
                _out(f"job {uuid}: not visible to this identity: {exc.detail}", sys.stderr)
                code = EXIT_LOOKUP
                continue
            except JobRecordError as exc:
                _out(f"job {uuid}: cannot read its record: {exc.detail}", sys.stderr)
                code = code or EXIT_FAILURE
                continue
            since = None
            if job.status not in {"RUNNING", "QUEUED"}:
                try:
                    history = await client.get_history(uuid)
                    since = status_entered_from_history(history, job.status)
                except (TapisError, JobRecordError) as exc:
                    _out(f"job {uuid}: time in {job.status} unknown, no history: {exc}")
            _explain_job(job, config, rules, now, since, silences=silences)
    finally:
        await client.aclose()
    return code
