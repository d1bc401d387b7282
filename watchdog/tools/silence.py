"""`tapis-watchdog silence add|list|expire`: time-boxed "let this one run", from the command line.

A silence is written to the state store (`state.path`), where the daemon reads it at its next
poll: no reload, no Tapis credentials, no network. It is bounded: at most `safety.max_silence`
long, and one that would spare every job needs an explicit `--all`. Adding and expiring one are
events (`silence_added`, `silence_expired`) in the audit trail, with who, what, when and why,
and sent to the notification targets that subscribe to them (from the command, before it exits).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchdog.config.fields import compact_duration
from watchdog.config.model import OfflineConfig, load_offline_config
from watchdog.durations import format_duration, parse_duration
from watchdog.errors import StateError, UsageError
from watchdog.events import EventLog, configure_logging, register_secret, silence_fields
from watchdog.rules.silence import glob_matches_everything

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator
    from datetime import timedelta

    from watchdog.state.schema import Silence
    from watchdog.state.store import StateStore

# Tapis job uuids are `8-4-4-4-12` hex then `-007`; accept any id made of the same characters, so
# a tenant with another layout still works, but a pasted sentence or an option does not.
_UUID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{7,}$")
_TIME = "%Y-%m-%dT%H:%M:%SZ"
NOTIFY_TIMEOUT_S = 30.0


def _out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)  # noqa: T201 - the command's own output


def _config(args: argparse.Namespace) -> tuple[Path, OfflineConfig]:
    if not args.config:
        raise UsageError("no configuration: pass -c FILE or set TAPIS_WATCHDOG_CONFIG")
    path = Path(args.config)
    return path, load_offline_config(path)


def _open_store(config: OfflineConfig) -> StateStore:
    from watchdog.state.store import StateStore  # noqa: PLC0415 - only when the command runs

    if not Path(config.state.path).exists():
        # A new, empty store here would be one the daemon never reads: refuse instead.
        raise StateError(
            f"no state store at {config.state.path}: the daemon has not run with this "
            "configuration here (state.path; under systemd set STATE_DIRECTORY as the unit does)"
        )
    return StateStore.open(config.state.path)


def default_author() -> str:
    """Who is adding the silence: the user behind sudo, else the login name."""
    name = os.environ.get("SUDO_USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "unknown"


@contextmanager
def _events(store: StateStore, config: OfflineConfig, event: str) -> Iterator[EventLog]:
    """The event log of one command: the audit trail, and the notification targets that
    subscribe to `event` (sent before the command exits, within `NOTIFY_TIMEOUT_S`)."""
    # The person reads the sentence printed on stdout, so only warnings and errors reach the
    # terminal (on stderr).
    configure_logging(stream=sys.stderr, level="warning")
    targets = [(t.url.get_secret_value(), t.events) for t in config.notify if event in t.events]
    if not targets:
        yield EventLog(store)
        return
    from watchdog.service.notify import Notifier  # noqa: PLC0415 - Apprise only when needed

    for url, _ in targets:
        register_secret(url)
    try:
        notifier = Notifier(targets, claim=store.claim_notification, on_failure=_notify_failed)
    except ValueError as exc:  # a URL Apprise cannot load: the silence itself still counts
        _notify_failed(event, str(exc))
        yield EventLog(store)
        return
    try:
        yield EventLog(store, listeners=[notifier.observe_event])
    finally:
        notifier.close(NOTIFY_TIMEOUT_S)


def _notify_failed(event: str, error: str) -> None:
    print(f"tapis-watchdog: notification of {event} failed: {error}", file=sys.stderr)  # noqa: T201


# ---------------------------------------------------------------------- explain
def stored_silences(config: OfflineConfig, now: datetime) -> list[Silence]:
    """The silences in force at `now` in the configuration's state store (none without one)."""
    from watchdog.state.store import StateStore  # noqa: PLC0415 - only when there is a store

    if not Path(config.state.path).exists():
        return []
    with StateStore.open(config.state.path) as store:
        return store.active_silences(now)


def cmd_silence(args: argparse.Namespace) -> int:
    """Run `silence add`, `silence list` or `silence expire`."""
    handlers = {"add": _add, "list": _list, "expire": _expire}
    return handlers[args.silence_command](args)


def _jobs(silence: Silence) -> str:
    return silence.describe().removesuffix(f"; rule {silence.rule}")


def _rules(silence: Silence) -> str:
    return "every cancel" if silence.rule is None else f"cancels by rule {silence.rule}"


# ---------------------------------------------------------------------- add
def _duration(text: str, config: OfflineConfig) -> timedelta:
    try:
        duration = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--for: {exc}") from exc
    except OverflowError:
        raise UsageError(f"--for: too long, got {text!r}") from None
    limit = config.safety.max_silence
    if duration.total_seconds() <= 0:
        raise UsageError(f"--for: must be longer than 0s, got {text!r}")
    if duration > limit:
        msg = (
            f"--for: {text} is longer than safety.max_silence ({compact_duration(limit)}); "
            "add a shorter silence and renew it, or raise safety.max_silence"
        )
        raise UsageError(msg)
    return duration


def check_selectors(args: argparse.Namespace, config: OfflineConfig) -> list[str]:
    """Every problem with what the silence would match (empty: it may be added)."""
    found: list[str] = []
    bad = [u for u in args.uuids if not _UUID.match(u)]
    if bad:
        found.append(f"UUID: not a job uuid: {', '.join(repr(u) for u in bad)}")
    if args.owner is not None and not args.owner.strip():
        found.append("--owner: must not be empty")
    if args.app is not None and not args.app.strip():
        found.append("--app: must not be empty")
    # Budgets' cancels are spared through the same names as rules'.
    names = [rule.name for rule in config.rules] + [budget.name for budget in config.budgets]
    if args.rule is not None and args.rule not in names:
        known = ", ".join(names) or "none"
        found.append(
            f"--rule: no rule or budget named {args.rule!r} in {config.source} "
            f"(rules and budgets: {known})"
        )
    app_narrows = args.app is not None and not glob_matches_everything(args.app)
    narrowed = bool(args.uuids) or args.owner is not None or app_narrows
    if args.all and narrowed:
        found.append("--all: the silence is narrowed by UUID, --owner or --app; drop --all")
    elif not args.all and not narrowed:
        scope = f"from rule {args.rule}" if args.rule else "from every rule"
        found.append(
            f"this silence would spare every job {scope}: name the jobs (UUID..., --owner, "
            "--app), or pass --all if that is what you mean"
        )
    return found


def _add(args: argparse.Namespace) -> int:
    config_path, config = _config(args)
    duration = _duration(args.duration, config)
    reason = (args.reason or "").strip()
    found = check_selectors(args, config)
    if not reason:
        found.append("--reason: say why, for whoever reads the audit trail")
    if found:
        raise UsageError("; ".join(found))
    author = (args.by or "").strip() or default_author()
    store = _open_store(config)
    try:
        now = datetime.now(UTC)
        app = None if args.app is None or glob_matches_everything(args.app) else args.app
        silence = store.add_silence(
            created_at=now,
            expires_at=now + duration,
            created_by=author,
            reason=reason,
            uuids=args.uuids,
            owner=args.owner,
            app=app,
            rule=args.rule,
        )
        with _events(store, config, "silence_added") as events:
            events.silence_added(silence)
    finally:
        store.close()
    if args.json:
        _out(json.dumps(silence_fields(silence), sort_keys=True))
        return 0
    _out(
        f"silence {silence.id} added: spares {_jobs(silence)} from {_rules(silence)} until "
        f"{silence.expires_at:{_TIME}} ({format_duration(duration)}), by {author}: {reason}"
    )
    _out(
        "it applies from the daemon's next poll; end it early with: "
        f"tapis-watchdog silence expire {silence.id} -c {config_path}"
    )
    return 0


# ---------------------------------------------------------------------- list
def _row(silence: Silence, now: datetime) -> dict[str, Any]:
    fields = silence_fields(silence)
    fields["active"] = silence.active(now)
    fields["ended_at"] = f"{silence.until:{_TIME}}" if not silence.active(now) else None
    fields["ended_by"] = silence.ended_by
    return fields


def _list(args: argparse.Namespace) -> int:
    _, config = _config(args)
    store = _open_store(config)
    now = datetime.now(UTC)
    try:
        silences = store.silences() if args.expired else store.active_silences(now)
    finally:
        store.close()
    if args.json:
        for silence in silences:
            _out(json.dumps(_row(silence, now), sort_keys=True))
        return 0
    if not silences:
        _out("no active silences" if not args.expired else "no silences kept")
        return 0
    _out(f"{'ID':<8} {'UNTIL':<21} {'LEFT':<8} {'BY':<12} {'MATCHES':<40} REASON")
    for silence in silences:
        left = format_duration(silence.until - now) if silence.active(now) else "ended"
        _out(
            f"{silence.id:<8} {silence.until:{_TIME}}  {left:<8} {silence.created_by:<12} "
            f"{silence.describe():<40} {silence.reason}"
        )
    return 0


# ---------------------------------------------------------------------- expire
def _expire(args: argparse.Namespace) -> int:
    _, config = _config(args)
    author = (args.by or "").strip() or default_author()
    store = _open_store(config)
    try:
        now = datetime.now(UTC)
        before = store.silence(args.id)
        if before is None:
            raise StateError(f"no silence {args.id!r} in {config.state.path} (see: silence list)")
        if not before.active(now):
            _out(f"silence {before.id} already ended at {before.until:{_TIME}}")
            return 0
        after = store.end_silence(args.id, now, author)
        if after is None or after.ended_at is None:  # it expired by itself a moment ago
            _out(f"silence {before.id} already ended at {before.expires_at:{_TIME}}")
            return 0
        with _events(store, config, "silence_expired") as events:
            events.silence_expired(after)
    finally:
        store.close()
    _out(
        f"silence {after.id} expired by {author}: {_jobs(after)} can be cancelled again "
        f"({_rules(after)}) from the daemon's next poll"
    )
    return 0
