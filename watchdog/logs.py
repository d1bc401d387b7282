"""structlog, configured once: JSON lines for machines, a console rendering for people.

    event dict ─► level, timestamp, traceback text ─► scrub (watchdog.redaction)
               ─► json:    JSONRenderer (every figure exact)
                  console: figures rounded for people ─► ConsoleRenderer (colour when wanted)
               ─► `<N>` syslog priority prefix when stdout is the journal

The format is JSON unless the stream is a terminal (or the caller asks). Colour follows the
conventions people set in their shells: `NO_COLOR` (non-empty) turns it off, `FORCE_COLOR`
(non-empty) turns it on off a terminal, and otherwise a terminal gets colour. Under systemd,
`JOURNAL_STREAM` holds the `device:inode` of the journal's stream; when stdout is that stream,
every line starts with its sd-daemon(3) priority (`<3>` error, `<4>` warning, `<6>` info, `<7>`
debug), so `journalctl -p warning` shows every warning-level event.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import sys
from typing import TYPE_CHECKING, Any, Literal, TextIO

import orjson
import structlog

from watchdog.redaction import scrub_event

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, MutableMapping

__all__ = [
    "LEVELS",
    "LogFormat",
    "already_scrubbed",
    "configure_logging",
    "for_people",
    "journal_priority",
]

LogFormat = Literal["json", "console"]
LEVELS = ("debug", "info", "warning", "error")

# sd-daemon(3): SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG.
_PRIORITIES = {
    "critical": 2,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "info": 6,
    "debug": 7,
}

_stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)


def add_timestamp(
    logger: Any, name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Stamp a log line, unless it is an event that carries its own time (stdout and the audit
    trail then agree)."""
    if "timestamp" in event_dict:
        return event_dict
    return _stamp(logger, name, event_dict)


_clean: contextvars.ContextVar[bool] = contextvars.ContextVar("watchdog_clean", default=False)


@contextlib.contextmanager
def already_scrubbed() -> Iterator[None]:
    """Within this block, log calls carry dicts that were scrubbed already (EventLog's)."""
    token = _clean.set(True)
    try:
        yield
    finally:
        _clean.reset(token)


def _scrub(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if _clean.get():
        return event_dict
    return scrub_event(dict(event_dict))


def for_people(value: Any) -> Any:
    """A figure rounded for reading: 0.4721965546105178 → 0.47, 0.000123 → 0.00012.

    Anything but a float is returned as it is; so are floats without a fractional part.
    """
    if not isinstance(value, float) or not math.isfinite(value) or value.is_integer():
        return value
    if abs(value) >= 0.01:
        return round(value, 2)
    return float(f"{value:.2g}")


def _round_for_people(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {key: for_people(value) for key, value in event_dict.items()}


def journal_priority(method: str) -> int:
    """The syslog priority of a structlog method name (`warning` → 4); unknown names are info."""
    return _PRIORITIES.get(method, 6)


def _prefix_priority(_logger: Any, name: str, line: Any) -> Any:
    if not isinstance(line, str):
        return line
    prefix = f"<{journal_priority(name)}>"
    # journald reads the prefix per line: a multi-line rendering (a traceback) keeps its level.
    return prefix + line.replace("\n", "\n" + prefix)


def _serialize(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def is_journal(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True when `JOURNAL_STREAM` (`device:inode`) names the file `stream` writes to."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def use_colour(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """`NO_COLOR` set: no; else `FORCE_COLOR` set: yes; else whether `stream` is a terminal."""
    environ = os.environ if env is None else env
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    return callable(isatty) and bool(isatty())


def configure_logging(
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    level: str = "info",
    log_format: LogFormat | None = None,
) -> None:
    """Configure structlog for the process; a second call with the same arguments changes nothing.

    Args:
        json: JSON lines (True) or the console rendering (False); by default JSON unless the
            stream is a terminal. `log_format` says the same in words and wins when given.
        stream: where lines go (default: stdout).
        level: the lowest level written (`debug`, `info`, `warning`, `error`).
        log_format: `json` or `console`.

    Raises:
        ValueError: `level` or `log_format` is not one of the names above.
    """
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}: {level!r}")
    if log_format is not None:
        if log_format not in {"json", "console"}:
            raise ValueError(f"log format must be json or console: {log_format!r}")
        json = log_format == "json"
    out = stream if stream is not None else sys.stdout
    isatty = getattr(out, "isatty", None)
    terminal = callable(isatty) and bool(isatty())
    as_json = not terminal if json is None else json
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_timestamp,
        structlog.processors.format_exc_info,
        _scrub,
    ]
    if as_json:
        processors.append(structlog.processors.JSONRenderer(serializer=_serialize))
    else:
        processors += [_round_for_people, structlog.dev.ConsoleRenderer(colors=use_colour(out))]
    if is_journal(out):
        processors.append(_prefix_priority)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level.lower()),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
