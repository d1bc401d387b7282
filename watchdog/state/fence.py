"""The fencing check: the first statement of every write transaction of the active instance.

An instance holding the lease (`state/lease.py`) carries its fencing token, and each write of a
decision, a cancel, an attempt or a claim starts with `check`: an UPDATE of the lease row that
matches only while the lease still has this holder and token. A takeover raises the token, so
from then on every write of the deposed instance is refused before it changes anything
(`LeaseLostError`, the transaction rolled back), however long that instance was paused. The
UPDATE rather than a SELECT locks the row on PostgreSQL until the transaction ends, so a
takeover cannot slip between the check and the write; SQLite's writer lock does the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from watchdog.errors import LeaseLostError

LEASE_NAME = "active"
"""The one row of the `leader` table."""


@dataclass(frozen=True, slots=True)
class Fence:
    """What the active instance's writes carry: who holds the lease, at which token."""

    holder: str
    token: int


def check(conn: Any, fence: Fence) -> None:
    """Refuse the transaction unless the lease is still `fence`'s.

    Raises:
        LeaseLostError: another instance took the lease over (or it was removed).
    """
    cur = conn.execute(
        "UPDATE leader SET token = token WHERE name = ? AND holder = ? AND token = ?",
        (LEASE_NAME, fence.holder, fence.token),
    )
    if cur.rowcount != 1:
        raise LeaseLostError(fence.holder, fence.token, "another instance holds the lease")
