"""The silences table of the state store: add, list, expire by hand, log each expiry once.

A silence is written by `tapis-watchdog silence add` (no daemon, no Tapis) and read by the daemon
at every poll, so it applies from the next poll without a reload and survives restarts. `StateStore`
inherits these methods; they use its one connection and its transactions.

Ids are short (six characters a person can read aloud and type on a phone: no 0/o, 1/l/i) and
unique in the store: a new id is drawn until it is free, inside the transaction that inserts it.
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

from watchdog.state.schema import Silence, to_db

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence
    from contextlib import AbstractContextManager
    from datetime import datetime

__all__ = ["ID_ALPHABET", "ID_LENGTH", "Silence", "SilenceReads", "SilenceTable"]

ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
ID_LENGTH = 6
# Active at `?1`: created, not past its expiry, not expired by hand.
_ACTIVE = "created_at <= ?1 AND expires_at > ?1 AND (ended_at IS NULL OR ended_at > ?1)"


def new_silence_id() -> str:
    """A random id of `ID_LENGTH` characters from `ID_ALPHABET` (31**6, about 887 million)."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


class SilenceReads:
    """Reading silences (mixed into `StateStore` and the read-only `StateReader`)."""

    if TYPE_CHECKING:

        def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]: ...

    def silence(self, silence_id: str) -> Silence | None:
        """The silence with this id (active or not), or None."""
        rows = self._query("SELECT * FROM silences WHERE id = ?", (silence_id,))
        return Silence.from_row(rows[0]) if rows else None

    def active_silences(self, now: datetime) -> list[Silence]:
        """Silences that spare jobs at `now`, the one expiring first first."""
        rows = self._query(
            f"SELECT * FROM silences WHERE {_ACTIVE} ORDER BY expires_at, id",  # noqa: S608
            (to_db(now),),
        )
        return [Silence.from_row(r) for r in rows]

    def silences(self, *, ended_since: datetime | None = None) -> list[Silence]:
        """Every silence kept (optionally only those ending at or after `ended_since`), newest
        first."""
        if ended_since is None:
            rows = self._query("SELECT * FROM silences ORDER BY created_at DESC, id")
        else:
            rows = self._query(
                "SELECT * FROM silences WHERE min(expires_at, coalesce(ended_at, expires_at)) "
                ">= ? ORDER BY created_at DESC, id",
                (to_db(ended_since),),
            )
        return [Silence.from_row(r) for r in rows]


class SilenceTable(SilenceReads):
    """Silences in the state store (mixed into `StateStore`). Raises `StateError` like it."""

    if TYPE_CHECKING:

        def _write(
            self, *, durable: bool = False, fenced: bool = True
        ) -> AbstractContextManager[sqlite3.Connection]: ...

    def add_silence(
        self,
        *,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
        reason: str,
        uuids: Sequence[str] = (),
        owner: str | None = None,
        app: str | None = None,
        rule: str | None = None,
    ) -> Silence:
        """Store a new silence (durably: it is a promise to a person) and return it with its id.

        Validation (duration, selectors) is the caller's: this stores what it is given.
        """
        with self._write(durable=True) as conn:
            while True:
                silence_id = new_silence_id()
                taken = conn.execute("SELECT 1 FROM silences WHERE id = ?", (silence_id,))
                if taken.fetchone() is None:
                    break
            conn.execute(
                "INSERT INTO silences (id, created_at, expires_at, created_by, reason, uuids, "
                "owner, app, rule) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    silence_id,
                    to_db(created_at),
                    to_db(expires_at),
                    created_by,
                    reason,
                    json.dumps(list(dict.fromkeys(uuids))),
                    owner,
                    app,
                    rule,
                ),
            )
        found = self.silence(silence_id)
        assert found is not None
        return found

    def end_silence(self, silence_id: str, at: datetime, by: str) -> Silence | None:
        """End an active silence now (`silence expire`); its expiry counts as logged, since the
        caller logs it. Returns the silence as it is afterwards (None: no such id); one that had
        already ended is returned unchanged."""
        ts = to_db(at)
        with self._write(durable=True) as conn:
            conn.execute(
                f"UPDATE silences SET ended_at = ?1, ended_by = ?2, "  # noqa: S608
                f"expiry_logged_at = ?1 WHERE id = ?3 AND {_ACTIVE}",
                (ts, by, silence_id),
            )
        return self.silence(silence_id)

    def claim_expired_silences(self, now: datetime) -> list[Silence]:
        """Silences that ended by themselves at or before `now` and whose `silence_expired` was
        not logged yet; each is returned once, across restarts, for the caller to log."""
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE silences SET expiry_logged_at = ?1 WHERE expiry_logged_at IS NULL AND "
                "expires_at <= ?1 RETURNING *",
                (to_db(now),),
            ).fetchall()
        return sorted((Silence.from_row(r) for r in rows), key=lambda s: (s.expires_at, s.id))

    def prune_silences(self, before: datetime) -> int:
        """Forget silences that ended before `before`; returns how many."""
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM silences WHERE min(expires_at, coalesce(ended_at, expires_at)) < ?",
                (to_db(before),),
            ).rowcount
