"""Durations as users write them: `30s`, `90m`, `12h`, `2d`, `1h30m`; and back, for reasons."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text into a timedelta.

    Raises:
        ValueError: the text is not a duration; the message says what is expected.
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        msg = f'expected a duration like "90m" or "12h", got {text!r}'
        raise ValueError(msg)
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_relative(text: str) -> timedelta:
    """Parse a signed duration such as `-13h` or `+5m` (the sign defaults to +)."""
    stripped = text.strip()
    sign = -1 if stripped.startswith("-") else 1
    return sign * parse_duration(stripped.lstrip("+-"))


def format_duration(delta: timedelta) -> str:
    """Render a duration compactly for people: `12h03m`, `45m10s`, `2d04h`, `0s`."""
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return (
            f"{sign}{days}d{hours:02d}h"
            if not minutes
            else f"{sign}{days}d{hours:02d}h{minutes:02d}m"
        )
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{seconds:02d}s" if seconds else f"{sign}{minutes}m"
    return f"{sign}{seconds}s"
