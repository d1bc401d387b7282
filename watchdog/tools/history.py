"""`tapis-watchdog history`: the audit trail from the state store, oldest first.

One line per event: its time, its name, `[dry run]` when nothing was (or would have been) done
for real, the job (uuid and name) with its rule (`by hand` for the `cancel` command's own
cancels), then the figures that event carries (`poll_completed`'s `jobs_seen`, `matches`,
`cancels`, `api_calls`, `duration_s`; a cancel's `why`, `final_status`, `latency_s`; ...), the
reason and the error last. `--json` prints each event whole, one JSON object per line.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchdog.config.model import load_offline_config
from watchdog.durations import parse_duration
from watchdog.errors import StateError, UsageError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

# The figures shown after the job, in this order; the reason and error come last.
FIGURES = (
    *("jobs_seen", "matches", "cancels", "api_calls", "duration_s"),
    *("version", "rule_count", "restart_needed", "metrics_url"),
    *("operation", "http_status", "retry_in_s"),
    *("why", "final_status", "latency_s", "attempt", "by", "silences_active"),
    *("silence_id", "expires_at", "ended_by"),
)
LAST = ("reason", "error")


def _out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)  # noqa: T201 - the command's own output


def format_event(event: Mapping[str, Any]) -> str:
    """One event as one line for a person."""
    parts = [str(event.get("timestamp", "")), f"{event.get('event', ''):<24}"]
    if event.get("dry_run") is True:
        parts.append("[dry run]")
    job = event.get("job_uuid")
    if job:
        name = event.get("job_name")
        rule = "by hand" if event.get("manual") else (event.get("rule") or "-")
        parts.append(f"{job}{f' ({name})' if name else ''} rule={rule}")
    shown = set()
    for key in (*FIGURES, *LAST):
        value = event.get(key)
        if key in shown or value in (None, "", []) or (key == "by" and not job):
            continue
        shown.add(key)
        parts.append(f"{key}={_show(value)}")
    return "  ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def cmd_history(args: argparse.Namespace) -> int:
    from watchdog.state.store import StateStore  # noqa: PLC0415 - only when the command runs

    if not args.config:
        raise UsageError("no configuration: pass -c FILE or set TAPIS_WATCHDOG_CONFIG")
    try:
        since = datetime.now(UTC) - parse_duration(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from exc
    except OverflowError:
        raise UsageError(f"--since: too long, got {args.since!r}") from None
    config = load_offline_config(Path(args.config))
    if not Path(config.state.path).exists():
        # Opening would create an empty store, in a place the daemon may not own.
        raise StateError(
            f"no state store at {config.state.path}: the daemon has not run with this "
            "configuration here (state.path)"
        )
    store = StateStore.open(config.state.path)
    try:
        events = store.events_since(since)
    finally:
        store.close()
    for event in events:
        if args.json:
            _out(json.dumps(event, sort_keys=True, default=str))
        else:
            _out(format_event(event))
    if not args.json:
        _out(f"{len(events)} events since {since:%Y-%m-%dT%H:%M:%SZ}")
    return 0
