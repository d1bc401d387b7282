"""The lease of the one active instance, with its fencing token, in the state store.

Several instances may share one store (two hosts on one PostgreSQL database; two processes on one
SQLite file, which makes the second a standby). One of them is active: it holds the row of the
`leader` table, renews it (each poll, and every third of an interval), and carries its fencing
token in every write it makes (`state/fence.py`). The others are standby: they read the row every
third of an interval and take the lease over once it has expired, raising the token, so every
later write of the instance they replaced is refused.

Why a lease row and not a session advisory lock (`pg_advisory_lock` on a dedicated connection):

- host loss and network partition: an advisory lock lives as long as the server believes the
  session is alive, which, with the client's host gone, is until TCP keepalives give up (minutes to
  hours, not two poll intervals). A lease expires at a known time.
- a paused process (SIGSTOP, a VM frozen, a long GC): it keeps its connection, so an advisory lock
  would hold every standby off for as long as the pause lasts; its lease simply expires, and the
  token raised at the takeover refuses whatever the paused process tries to write when it wakes.
- the same code on SQLite, where there are no advisory locks, and a token that orders tenures
  (a lock says who holds it now, not whether a write comes from an earlier holder).

Expiry is judged by the database's clock where it has one (PostgreSQL's `clock_timestamp()`), so
the hosts' clocks need not agree; an SQLite file lives on one host, whose clock every instance
shares. An instance that finds the holder recorded as a process of its own host and boot that is
no longer alive takes the lease at once instead of waiting for it to expire: a daemon killed and
restarted by systemd is active again without waiting an interval.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from watchdog.state.database import Database
from watchdog.state.fence import LEASE_NAME, Fence
from watchdog.state.schema import from_db

__all__ = ["Holder", "LeaseState", "LeaseTable", "this_process"]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True, slots=True)
class Holder:
    """One instance: `id` is unique per process; host, boot and pid tell a dead one on a host."""

    id: str
    host: str
    boot: str
    pid: int


@cache
def this_process() -> Holder:
    """This process as a lease holder (the same for every store it opens)."""
    host = socket.gethostname()
    pid = os.getpid()
    return Holder(id=f"{host}:{pid}:{secrets.token_hex(3)}", host=host, boot=_boot_id(), pid=pid)


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (a zombie has already died)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True
    # The state follows the command name in parentheses, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


@dataclass(frozen=True, slots=True)
class LeaseState:
    """What a look at the lease found: who holds it, and whether that is the caller."""

    active: bool
    holder: str
    token: int
    expires_in_s: float
    """Seconds until the lease expires by the database's clock (negative: expired)."""
    took_over_from: str | None = None
    """Set when this look made the caller active: the previous holder ('' for none)."""


def _db_now_us(conn: Any) -> int:
    """Now in microseconds by the database's clock (SQLite has none but its host's)."""
    if isinstance(conn, sqlite3.Connection):
        return time.time_ns() // 1000
    row = conn.execute(
        "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"
    ).fetchone()
    return int(row[0])


class LeaseTable(Database):
    """The `leader` row. Its own writes are not fenced: they are how the fence moves."""

    def hold_lease(self, holder: Holder, ttl: timedelta) -> LeaseState:
        """Renew the lease if `holder` has it, take it over if it is free, else report who has it.

        Sets `fence` while `holder` is active and clears it otherwise, so the store's fenced
        writes carry the token from here on.

        Raises:
            StateError: the store cannot be read or written (the fence is left as it was: the
                fenced writes themselves will tell).
        """
        ttl_us = int(ttl / timedelta(microseconds=1))
        with self._write(durable=True, fenced=False) as conn:
            now = _db_now_us(conn)
            # A first row nobody holds (token 0, expired), so taking it is a takeover like any.
            conn.execute(
                "INSERT INTO leader (name, holder, host, boot, pid, token, acquired_at, "
                "expires_at) VALUES (?, '', '', '', 0, 0, ?, 0) ON CONFLICT (name) DO NOTHING",
                (LEASE_NAME, now),
            )
            row = conn.execute(
                "SELECT holder, host, boot, pid, token, expires_at FROM leader WHERE name = ?",
                (LEASE_NAME,),
            ).fetchone()
            current, host, boot, pid, token, expires_at = tuple(row)
            state = self._claim(conn, holder, now, ttl_us, (current, host, boot, pid, token))
            if state is None:
                state = LeaseState(
                    active=False,
                    holder=current,
                    token=int(token),
                    expires_in_s=(int(expires_at) - now) / 1e6,
                )
                if int(expires_at) <= now or self._dead_here(holder, host, boot, int(pid)):
                    taken = self._take(
                        conn, holder, span=(now, now + ttl_us), previous=current, token=int(token)
                    )
                    state = taken or state
        self.fence = Fence(holder.id, state.token) if state.active else None
        return state

    def _claim(
        self, conn: Any, holder: Holder, now: int, ttl_us: int, row: tuple[Any, ...]
    ) -> LeaseState | None:
        """Renew a lease `holder` already has; None when it is someone else's."""
        current, _host, _boot, _pid, token = row
        if current != holder.id:
            return None
        cur = conn.execute(
            "UPDATE leader SET expires_at = ? WHERE name = ? AND holder = ? AND token = ?",
            (now + ttl_us, LEASE_NAME, holder.id, token),
        )
        if cur.rowcount != 1:
            return None
        return LeaseState(
            active=True, holder=holder.id, token=int(token), expires_in_s=ttl_us / 1e6
        )

    @staticmethod
    def _dead_here(holder: Holder, host: str, boot: str, pid: int) -> bool:
        same_boot = bool(boot) and boot == holder.boot
        return host == holder.host and same_boot and pid != holder.pid and not _alive(pid)

    @staticmethod
    def _take(
        conn: Any, holder: Holder, *, span: tuple[int, int], previous: str, token: int
    ) -> LeaseState | None:
        """Take the lease over from `previous` at `token`; None when another got there first."""
        now, expires_at = span
        cur = conn.execute(
            "UPDATE leader SET holder = ?, host = ?, boot = ?, pid = ?, token = token + 1, "
            "acquired_at = ?, expires_at = ? WHERE name = ? AND token = ?",
            (holder.id, holder.host, holder.boot, holder.pid, now, expires_at, LEASE_NAME, token),
        )
        if cur.rowcount != 1:
            return None
        return LeaseState(
            active=True,
            holder=holder.id,
            token=token + 1,
            expires_in_s=(expires_at - now) / 1e6,
            took_over_from=previous,
        )

    def release_lease(self, holder: Holder) -> None:
        """Give the lease up at once (a clean stop), so a standby need not wait for it to expire.

        Does nothing when `holder` no longer has it.
        """
        fence, self.fence = self.fence, None
        if fence is None or fence.holder != holder.id:
            return
        with self._write(durable=True, fenced=False) as conn:
            conn.execute(
                "UPDATE leader SET expires_at = 0 WHERE name = ? AND holder = ? AND token = ?",
                (LEASE_NAME, holder.id, fence.token),
            )

    def lease_holder(self) -> tuple[str, int, float | None] | None:
        """Who holds the lease, at which token and until when (Unix time); None before any."""
        rows = self._query(
            "SELECT holder, token, expires_at FROM leader WHERE name = ?", (LEASE_NAME,)
        )
        if not rows:
            return None
        holder, token, expires_at = tuple(rows[0])
        until = from_db(int(expires_at))
        return str(holder), int(token), None if until is None else until.timestamp()
