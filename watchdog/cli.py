"""The `tapis-watchdog` command: subcommands, and the mapping of errors to exit codes.

Exit codes (the `EXIT_*` constants of `watchdog.errors`): 0 success; 1 failure; 2 usage error,
invalid input file, invalid configuration or an address that cannot be listened on; 3 cannot
authenticate to Tapis; 4 a job named on the command line is unknown to Tapis or not visible;
130 interrupted; 141 the reader of stdout went away. No traceback reaches the user: every
failure is one line on stderr saying what and where. Subcommands import their machinery lazily,
so that `check` and `sim` start fast and never import what they do not use.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from watchdog import __version__
from watchdog.errors import (
    EXIT_AUTH,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_USAGE,
    ConfigError,
    InputError,
    ListenError,
    TapisAuthError,
    UsageError,
    WatchdogError,
)

Handler = Callable[[argparse.Namespace], int]


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("TAPIS_WATCHDOG_CONFIG"),
        metavar="FILE",
        help="the YAML configuration (default: $TAPIS_WATCHDOG_CONFIG)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tapis-watchdog",
        description=(
            "Watch every active Tapis v3 job of an identity, evaluate YAML rules (runtime, "
            "time in a status, node hours, bad inputs), cancel offending jobs through cancelJob, "
            "prove each cancel took effect, and log every decision as a structured event."
        ),
        epilog="Exit codes: 0 ok; 1 failure; 2 usage error, invalid input file or configuration, "
        "or an address that cannot be listened on; 3 cannot authenticate to Tapis; 4 a job named "
        "on the command line is unknown to Tapis or not visible; 130 interrupted; 141 the reader "
        "of stdout went away.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run",
        help="run the daemon (or one poll with --once)",
        description=(
            "Poll every active job of the configured identity on a fixed cadence, evaluate the "
            "rules, cancel offending jobs (fresh status check, cancelJob, follow until terminal) "
            "and log every decision as one JSON line. SIGTERM/SIGINT stop it, SIGHUP reloads the "
            "configuration. Exit: 0 stopped; 1 unexpected failure, or --once whose poll failed; 2"
            " invalid configuration, or metrics.listen in use; 3 cannot authenticate."
        ),
    )
    _add_config(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="decide and log as a real run would; cancel nothing, keep no decision",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="one poll cycle, act, wait for the cancels it sent to be confirmed or time out, exit",
    )
    p.set_defaults(handler="watchdog.tools.commands:cmd_run")

    p = sub.add_parser(
        "check",
        help="validate the configuration and summarise its rules",
        description=(
            "Load and validate the configuration (every problem names its key path), then print a"
            " one-line summary of each rule. Needs no Tapis credentials: an unset ${VAR} or an "
            "unreadable *_file in the tapis section is listed as not resolved here (run, cancel "
            "and explain UUID need it). Exit: 0 valid, 2 invalid."
        ),
    )
    _add_config(p)
    p.set_defaults(handler="watchdog.tools.commands:cmd_check")

    _add_budgets(sub)

    p = sub.add_parser(
        "explain",
        help="show, rule by rule, what matches a job and why",
        description=(
            "Fetch jobs from Tapis (or read saved job records with --job-file, no credentials "
            "needed) and show each rule's verdict with its reason, and what the daemon would do. "
            "Acts on nothing. Exit: 0; 1 a record that cannot be read; 2 usage, a bad job file or "
            "configuration; 3 cannot authenticate; 4 a job unknown to Tapis or not visible."
        ),
    )
    _add_config(p)
    p.add_argument("uuids", nargs="*", metavar="UUID", help="jobs to fetch from Tapis")
    p.add_argument(
        "--job-file",
        action="append",
        default=[],
        metavar="FILE",
        help="a job record in JSON (e.g. saved from the Tapis portal); no credentials needed",
    )
    p.add_argument("--now", metavar="TIME", help="evaluate at this UTC ISO-8601 time")
    p.set_defaults(handler="watchdog.tools.commands:cmd_explain")

    p = sub.add_parser(
        "test-rules",
        help="check rules against offline cases (jobs, a clock, verdicts)",
        description="Evaluate each case of a case file (a job as a partial Tapis record, a "
        "clock, and the expected verdict: cancel, warn or none, with the rule) through the "
        "daemon's own evaluation, and show failures as expected versus got. The case format "
        "is described in README.md. Exit: 0 all pass, 1 a case fails, 2 a malformed file.",
    )
    _add_config(p)
    p.add_argument("cases", metavar="CASES.yaml", help="the case file")
    p.set_defaults(handler="watchdog.tools.testrules:cmd_test_rules")

    p = sub.add_parser(
        "cancel",
        help="cancel one job by hand and follow it until it is terminal",
        description=(
            "Check the job's status, refuse a terminal job, ask for confirmation (unless --yes), "
            "cancel it, then follow its status until Tapis shows it terminal or "
            "safety.verify_timeout passes. Recorded in the audit trail (manual, by) when the "
            "state store exists. Exit: 0 cancelled; 1 terminal, declined or not "
            "confirmed; 2 no --yes without a terminal, or invalid configuration; 3 cannot "
            "authenticate; 4 unknown to Tapis or not visible."
        ),
    )
    _add_config(p)
    p.add_argument("uuid", metavar="UUID", help="the job to cancel")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler="watchdog.tools.cancel:cmd_cancel")

    p = sub.add_parser(
        "history",
        help="the audit trail from the state store",
        description=(
            "Print the events recorded in the state store (state.path) since a time, oldest "
            "first, one line each: time, event, [dry run], the job (uuid and name) and its rule "
            "('by hand' for the cancel command's), the event's figures (jobs_seen, matches, "
            "cancels, api_calls, duration_s for a poll), reason and error. Needs no Tapis "
            "credentials. Exit: 0; 1 when there is no state store yet."
        ),
    )
    _add_config(p)
    p.add_argument("--since", default="24h", metavar="DURATION", help="how far back (default 24h)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler="watchdog.tools.history:cmd_history")

    _add_silence(sub)

    p = sub.add_parser(
        "report",
        help="the status page's summary, offline, from the state store",
        description=(
            "Summarise the state store (state.path) without talking to Tapis: health (last good "
            "poll, failures since, breaker, dry run), jobs watched by status, cancels with their "
            "confirmation and latency, grace periods running with their deadline, warnings, "
            "skipped and hand cancels, and a 24-hour timeline; the same figures as the page at /. "
            "Exit: 0; 1 when there is no state store yet."
        ),
    )
    _add_config(p)
    p.add_argument("--since", default="12h", metavar="DURATION", help="how far back (default 12h)")
    p.add_argument(
        "--format",
        default="text",
        choices=("text", "markdown", "html", "json"),
        help="output format (default text)",
    )
    p.set_defaults(handler="watchdog.tools.report:cmd_report")

    p = sub.add_parser(
        "sim",
        help="run the built-in Tapis simulator",
        description=(
            "Serve a simulated Tapis v3 tenant on loopback for trying rules, the demo, tests and "
            "benchmarks. The first line on stdout is JSON with base_url, tenant_id, username and "
            "password; it serves until SIGTERM or SIGINT. Exit: 0; 2 an invalid fleet file, or "
            "the address cannot be listened on."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--fleet", metavar="FILE", help="a fleet file (YAML or JSON)")
    p.add_argument("--jobs", type=int, metavar="N", help="generate a synthetic fleet of N jobs")
    p.add_argument("--seed", type=int, default=0, help="seed for generated fleets and faults")
    p.add_argument("--live", action="store_true", help="jobs move through their statuses over time")
    p.set_defaults(handler="watchdog.sim.cli:cmd_sim")

    p = sub.add_parser(
        "demo",
        help="run the daemon against the simulator with a small fleet",
        description=(
            "Start the simulator in live mode with a small fleet (a runaway job, a bad input, a "
            "job stuck in staging, a long queue wait, an exempt job, healthy jobs), watch it with"
            " the example rules for about 30 seconds, then print what the watchdog did. Needs no "
            "Tapis account; leaves nothing running. Exit: 0."
        ),
    )
    p.set_defaults(handler="watchdog.tools.demo:cmd_demo")

    _add_init(sub)
    _add_logging_options(parser)
    return parser


def _add_budgets(sub: Any) -> None:
    p = sub.add_parser(
        "budgets",
        help="show where each budget stands: usage, limit, remaining, projection",
        description=(
            "List the identity's active jobs and the jobs that ended inside the budgets' windows"
            " from Tapis, and print each budget's usage (or count), limit, what remains, and for"
            " node_hours and su budgets a projection with every running job at its maxMinutes."
            " Acts on nothing and writes nothing. Exit: 0; 1 Tapis failed; 2 usage or"
            " configuration; 3 cannot authenticate."
        ),
    )
    _add_config(p)
    p.add_argument("--json", action="store_true", help="one JSON object per budget and line")
    p.set_defaults(handler="watchdog.tools.budgets:cmd_budgets")


def _add_init(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="write the example configuration and the systemd unit into a directory",
        description=(
            "Write DIR/config.yaml (the commented example configuration: edit tapis and the "
            "rules, then `tapis-watchdog check -c DIR/config.yaml`) and DIR/tapis-watchdog.service"
            " (the systemd unit, see docs/systemd.md) from the installed package. Needs no Tapis "
            "account. Exit: 0; 1 cannot write; 2 a file exists (without --force)."
        ),
    )
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="where (default: here)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.set_defaults(handler="watchdog.tools.init:cmd_init")


def _add_silence(sub: Any) -> None:
    parent = sub.add_parser(
        "silence",
        help="let matching jobs run: time-boxed silences that spare them from cancels",
        description=(
            "Add, list and expire silences. A silence spares the jobs it matches from cancels "
            "(optionally for one rule only) until it expires; it is kept in the state store "
            "(state.path), applies from the daemon's next poll without a reload, and needs no "
            "Tapis credentials. Exit: 0; 1 no state store or no such silence; 2 invalid "
            "configuration or usage."
        ),
    )
    silence = parent.add_subparsers(dest="silence_command", metavar="ACTION", required=True)
    p = silence.add_parser(
        "add",
        help="spare jobs (by uuid, owner, app or rule) from cancels for a while",
        description=(
            "Spare the matching jobs from cancels for --for (at most safety.max_silence). Every "
            "selector given must hold: UUIDs (any of them), --owner (exact), --app (a glob on "
            "appId); --rule limits it to one rule. A silence matching every job needs --all. "
            "Prints the new silence's id. Exit: 0 added; 1 no state store; 2 invalid usage."
        ),
    )
    _add_config(p)
    p.add_argument("uuids", nargs="*", metavar="UUID", help="jobs to spare (any of them)")
    p.add_argument("--owner", metavar="O", help="spare the jobs of this owner")
    p.add_argument("--app", metavar="GLOB", help="spare the jobs whose appId matches this glob")
    p.add_argument("--rule", metavar="NAME", help="spare them from this rule only")
    p.add_argument(
        "--for",
        dest="duration",
        required=True,
        metavar="DURATION",
        help="how long, e.g. 2h or 1d12h (at most safety.max_silence, default 7d)",
    )
    p.add_argument("--reason", required=True, help="why, for the audit trail")
    p.add_argument("--by", metavar="NAME", help="who (default: $SUDO_USER, else your login)")
    p.add_argument(
        "--all", action="store_true", help="allow a silence that matches every job (of --rule)"
    )
    p.add_argument("--json", action="store_true", help="print the silence as one JSON object")
    p.set_defaults(handler="watchdog.tools.silence:cmd_silence")

    p = silence.add_parser(
        "list",
        help="the active silences",
        description=(
            "List the silences in force now: id, end, time left, author, what they match, "
            "reason. Exit: 0; 1 no state store."
        ),
    )
    _add_config(p)
    p.add_argument("--expired", action="store_true", help="also the silences that have ended")
    p.add_argument("--json", action="store_true", help="one JSON object per silence")
    p.set_defaults(handler="watchdog.tools.silence:cmd_silence")

    p = silence.add_parser(
        "expire",
        help="end a silence now",
        description=(
            "End an active silence now: from the daemon's next poll the jobs it spared can be "
            "cancelled again. Exit: 0 (also when it had already ended); 1 no such silence or no "
            "state store."
        ),
    )
    _add_config(p)
    p.add_argument("id", metavar="ID", help="the silence's id (see: silence list)")
    p.add_argument("--by", metavar="NAME", help="who (default: $SUDO_USER, else your login)")
    p.set_defaults(handler="watchdog.tools.silence:cmd_silence")


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001 - argparse lists subcommands nowhere else
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                yield child
                yield from _subparsers(child)


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    # Accepted before or after the command; SUPPRESS keeps a subcommand from resetting a value
    # given before it.
    targets = [(parser, None), *((p, argparse.SUPPRESS) for p in _subparsers(parser))]
    for target, default in targets:
        group = target.add_argument_group("logging")
        group.add_argument(
            "--log-level",
            choices=("debug", "info", "warning", "error"),
            default="info" if default is None else default,
            help="the lowest level of event written to stdout (default info)",
        )
        group.add_argument(
            "--log-format",
            choices=("json", "console"),
            default=default,
            help="json lines, or console text for people (default: console on a terminal, "
            "else json); NO_COLOR / FORCE_COLOR control colour on the console",
        )


def _resolve(spec: str) -> Handler:
    import importlib  # noqa: PLC0415 - subcommands load only what they use

    module_name, _, attr = spec.partition(":")
    handler: Handler = getattr(importlib.import_module(module_name), attr)
    return handler


def _say(text: str) -> None:
    from watchdog.logs import is_journal  # noqa: PLC0415 - loaded by main already

    # stderr itself may be gone (closed by the caller): there is no one left to tell, and
    # print(file=None) would write to stdout instead.
    if sys.stderr is None:
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        # Under systemd, the reason a unit failed is an error to `journalctl -p err`
        # (sd-daemon(3)).
        prefix = "<3>" if is_journal(sys.stderr) else ""
        print(f"{prefix}tapis-watchdog: {text}", file=sys.stderr, flush=True)  # noqa: T201


def _where(exc: BaseException) -> str:
    """The innermost frame of an unexpected exception, as `module.py:line`."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {Path(last.filename).name}:{last.lineno})"


def _stdout_gone() -> None:
    """The reader of stdout went away (`| head`): point stdout at /dev/null, so the interpreter's
    own flush at exit cannot fail a second time."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _run(handler: Handler, args: argparse.Namespace) -> int:  # noqa: PLR0911 - one per error kind
    try:
        return handler(args)
    except UsageError as exc:
        _say(f"usage error: {exc} (see tapis-watchdog {args.command} --help)")
        return EXIT_USAGE
    except InputError as exc:
        _say(f"invalid input: {exc}")
        return EXIT_USAGE
    except ConfigError as exc:
        _say(f"invalid configuration: {exc}")
        return EXIT_USAGE
    except ListenError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except TapisAuthError as exc:
        _say(f"cannot authenticate to Tapis: {exc}")
        return EXIT_AUTH
    except WatchdogError as exc:
        _say(str(exc))
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code. No exception reaches the caller but SystemExit
    from argparse (--help, --version, a usage error: exit 0 or 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from watchdog.logs import configure_logging  # noqa: PLC0415 - after parsing, like handlers

    try:
        configure_logging(level=args.log_level, log_format=args.log_format)
        code = _run(_resolve(args.handler), args)
        if sys.stdout is not None:  # None when started with stdout closed
            sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        _say(f"unexpected error: {type(exc).__name__}: {exc}{_where(exc)}")
        return EXIT_FAILURE
    return code
