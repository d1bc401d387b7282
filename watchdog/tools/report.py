"""`tapis-watchdog report`: the status page's summary, offline, from the state store.

Reads the store read-only (it never creates one, never changes one), talks to no Tapis, and prints
the same summary the page at `/` shows, as text, Markdown, HTML or JSON.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast

from watchdog.config.model import load_offline_config
from watchdog.durations import parse_duration
from watchdog.errors import UsageError
from watchdog.rules.evaluate import compile_rules
from watchdog.service.render import FORMATS, Format, render_summary
from watchdog.service.summary import build_summary
from watchdog.state.reader import StateReader

if TYPE_CHECKING:
    import argparse


def cmd_report(args: argparse.Namespace) -> int:
    if not args.config:
        raise UsageError("no configuration: pass -c FILE or set TAPIS_WATCHDOG_CONFIG")
    try:
        since = parse_duration(args.since)
        _ = datetime.now(UTC) - since  # the window must start at a representable time
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from exc
    except OverflowError:
        raise UsageError(f"--since: too long, got {args.since!r}") from None
    if args.format not in FORMATS:
        raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {args.format!r}")
    # No Tapis call: the identity need not resolve here (no credentials needed).
    config = load_offline_config(Path(args.config))
    rules = compile_rules(config.rules)
    with StateReader.open(config.state.path) as reader:
        summary = build_summary(reader, config, rules, now=datetime.now(UTC), since=since)
    sys.stdout.write(render_summary(summary, cast("Format", args.format)))
    sys.stdout.flush()
    return 0
