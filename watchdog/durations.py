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


def format_duration(delta: timedelta, *, above: timedelta | None = None) -> str:
    """Render a duration compactly for people: `12h03m`, `45m10s`, `2d04h`, `0s`.

    The compact form drops what is smaller than its last unit. With `above`, the text is about
    a duration said to exceed `above`: when the compact form would not (12h00m59s shown as
    `12h00m` against 12h), every second is shown, and fractions of one if even that is not
    enough, so the sentence stays true.
    """
    compact, shown = _compact(delta)
    if above is None or delta <= above or shown > above:
        return compact
    exact = _exact(int(delta.total_seconds()))
    if timedelta(seconds=int(delta.total_seconds())) > above:
        return exact
    fraction = delta.total_seconds() % 1
    digits = f"{fraction:.6f}".rstrip("0").removeprefix("0")  # ".5" from 0.500000
    return f"{exact.removesuffix('s')}{digits}s"


def _exact(total: int) -> str:
    sign = "-" if total < 0 else ""
    days, rest = divmod(abs(total), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h{minutes:02d}m{seconds:02d}s"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m{seconds:02d}s"
    if minutes:
        return f"{sign}{minutes}m{seconds:02d}s"
    return f"{sign}{seconds}s"


def _compact(delta: timedelta) -> tuple[str, timedelta]:
    """The compact text and the duration it shows (what it dropped is gone)."""
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else ""
    factor = -1 if total < 0 else 1
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        shown = timedelta(days=days, hours=hours, minutes=minutes) * factor
        if not minutes:
            return f"{sign}{days}d{hours:02d}h", shown
        return f"{sign}{days}d{hours:02d}h{minutes:02d}m", shown
    if hours:
        return f"{sign}{hours}h{minutes:02d}m", timedelta(hours=hours, minutes=minutes) * factor
    if minutes:
        text = f"{sign}{minutes}m{seconds:02d}s" if seconds else f"{sign}{minutes}m"
        return text, timedelta(seconds=total) * factor
    return f"{sign}{seconds}s", timedelta(seconds=total) * factor
