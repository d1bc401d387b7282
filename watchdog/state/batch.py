"""A poll's reads and writes as a fixed number of SQL statements, whatever the number of jobs.

`read_snapshot` reads what the store knows about a poll's jobs in five queries; `write_changes`
writes a plan's `StateChanges` (the listing first, with `observe`) in at most eleven statements.
Lists of jobs travel as one JSON array parameter, unpacked by SQLite's `json_each`, so a poll of
10,000 jobs costs the same number of statements as a poll of ten. The callers (`StateStore`)
hold the transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from watchdog.state.schema import LISTED, Decision, from_db, to_db
from watchdog.state.snapshot import StateSnapshot

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from watchdog.state.snapshot import StateChanges

BREAKER_META_KEY = "circuit_open"
BUDGET_META_PREFIX = "budget_level:"
"""`meta` keys of the budgets' levels: `budget_level:<budget name>` → ok | warn | over."""
DRY_WARNING_PREFIX = "job_warned:dry_run:"

_TOUCH = (
    "INSERT INTO jobs (job_uuid, last_seen_at) SELECT value, ?2 FROM json_each(?1) WHERE true "
    "ON CONFLICT (job_uuid) DO UPDATE SET last_seen_at = max(last_seen_at, excluded.last_seen_at)"
)
_CLOCKS = (
    "INSERT OR IGNORE INTO status_clocks (job_uuid, status, entered_at) "
    "SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)"
)
_MATCHES = (
    "INSERT INTO decisions (job_uuid, rule, first_match_at) "
    "SELECT value ->> 0, value ->> 1, ?2 FROM json_each(?1) WHERE true "
    "ON CONFLICT (job_uuid, rule) DO UPDATE SET first_match_at = excluded.first_match_at, "
    "warned_at = NULL, cleared_at = NULL WHERE first_match_at IS NULL AND acted_at IS NULL"
)
_WARNED = (
    "INSERT INTO decisions (job_uuid, rule, first_match_at, warned_at) "
    "SELECT value ->> 0, value ->> 1, ?2, ?2 FROM json_each(?1) WHERE true "
    "ON CONFLICT (job_uuid, rule) DO UPDATE SET warned_at = excluded.warned_at, "
    "first_match_at = coalesce(first_match_at, excluded.first_match_at) WHERE warned_at IS NULL"
)
_CLEARED = (
    "UPDATE decisions SET first_match_at = NULL, cleared_at = ?2 "
    "WHERE (job_uuid, rule) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1)) "
    "AND first_match_at IS NOT NULL AND acted_at IS NULL"
)
_ACTED = (
    "INSERT INTO decisions (job_uuid, rule, first_match_at, acted_at, outcome) "
    "SELECT value ->> 0, value ->> 1, ?2, ?2, value ->> 2 FROM json_each(?1) WHERE true "
    "ON CONFLICT (job_uuid, rule) DO UPDATE SET acted_at = coalesce(acted_at, excluded.acted_at), "
    "outcome = excluded.outcome"
)
_CLAIMS = (
    "INSERT OR IGNORE INTO notifications (job_uuid, rule, event, claimed_at) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, ?2 FROM json_each(?1)"
)


def _json(rows: Iterable[Any]) -> str:
    return orjson.dumps(list(rows)).decode()


def observe(conn: sqlite3.Connection, statuses: Mapping[str, str], at: datetime) -> None:
    """Record a whole poll's listing: each job's status, and which jobs left it (three
    statements).

    Only what changed is written, so a poll where nothing changed writes nothing here: a new job,
    a job in another status than last time (a new visit: the old visit's clock for its status is
    dropped), a job back in the listing, and a job that left it. A listed job's `last_seen_at` is
    `LISTED`, which no prune reaches; when it leaves the listing (it ended, or is no longer
    watched) it becomes the time of the first poll without it, so its records are kept for the
    retention from then on.
    """
    pairs = _json([uuid, status] for uuid, status in statuses.items())
    conn.execute(
        "DELETE FROM status_clocks WHERE (job_uuid, status) IN (SELECT j.value ->> 0, "
        "j.value ->> 1 FROM json_each(?1) AS j JOIN jobs ON jobs.job_uuid = j.value ->> 0 "
        "WHERE jobs.status <> j.value ->> 1)",
        (pairs,),
    )
    conn.execute(
        "INSERT INTO jobs (job_uuid, status, last_seen_at) SELECT value ->> 0, value ->> 1, ?2 "
        "FROM json_each(?1) WHERE true ON CONFLICT (job_uuid) DO UPDATE SET "
        "status = excluded.status, last_seen_at = ?2 "
        "WHERE jobs.status IS NOT excluded.status OR jobs.last_seen_at <> ?2",
        (pairs, LISTED),
    )
    conn.execute(
        "UPDATE jobs SET last_seen_at = ?2 WHERE last_seen_at = ?3 AND job_uuid NOT IN "
        "(SELECT value ->> 0 FROM json_each(?1))",
        (pairs, to_db(at), LISTED),
    )


def read_snapshot(
    conn: sqlite3.Connection, statuses: Mapping[str, str], hour_ago: datetime
) -> StateSnapshot:
    """What the store knows about the jobs in `statuses` (uuid → status), in five queries."""
    uuids = _json(statuses)
    decisions: dict[tuple[str, str], Decision] = {}
    polled = conn.execute(
        "SELECT d.* FROM json_each(?1) AS j JOIN decisions AS d ON d.job_uuid = j.value", (uuids,)
    )
    open_matches = conn.execute(
        "SELECT * FROM decisions WHERE first_match_at IS NOT NULL AND acted_at IS NULL"
    )
    for row in (*polled.fetchall(), *open_matches.fetchall()):
        decision = Decision.from_row(row)
        decisions[decision.job_uuid, decision.rule] = decision
    # A clock is this visit's unless the job was last seen in another status: then it is an
    # earlier visit's, which `observe` drops when the plan is written.
    clocks = conn.execute(
        "SELECT c.job_uuid, c.entered_at FROM json_each(?1) AS j JOIN status_clocks AS c "
        "ON c.job_uuid = j.value ->> 0 AND c.status = j.value ->> 1 "
        "LEFT JOIN jobs ON jobs.job_uuid = c.job_uuid "
        "WHERE jobs.status IS NULL OR jobs.status = c.status",
        (_json([uuid, status] for uuid, status in statuses.items()),),
    ).fetchall()
    claims = conn.execute(
        "SELECT n.job_uuid, n.rule, n.event FROM notifications AS n JOIN decisions AS d "
        "ON d.job_uuid = n.job_uuid AND d.rule = n.rule "
        "WHERE d.first_match_at IS NOT NULL AND n.event LIKE ?1",
        (f"{DRY_WARNING_PREFIX}%",),
    ).fetchall()
    # The breaker's window and the budgets' levels: one query.
    breaker = conn.execute(
        "SELECT (SELECT value FROM meta WHERE key = ?1), (SELECT count(*) FROM cancels "
        "WHERE dry_run = 0 AND (sent_at >= ?2 OR (sent_at IS NULL AND finished_at IS NULL "
        "AND begun_at >= ?2))), (SELECT json_group_object(key, value) FROM meta "
        "WHERE key LIKE ?3)",
        (BREAKER_META_KEY, to_db(hour_ago), f"{BUDGET_META_PREFIX}%"),
    ).fetchone()
    levels: dict[str, Any] = orjson.loads(breaker[2] or "{}")
    entries = {}
    for uuid, entered in clocks:
        at = from_db(entered)
        assert at is not None
        entries[str(uuid)] = at
    return StateSnapshot(
        decisions=decisions,
        status_entries=entries,
        dry_warnings=frozenset((str(j), str(r), str(e)) for j, r, e in claims),
        breaker_open=breaker[0] == "1",
        cancels_last_hour=int(breaker[1]),
        budget_levels={k.removeprefix(BUDGET_META_PREFIX): str(v) for k, v in levels.items()},
    )


def write_changes(conn: sqlite3.Connection, changes: StateChanges) -> None:
    """Write a plan's changes (at most eleven statements, none for an empty list)."""
    at = to_db(changes.at)
    if changes.seen is not None:
        observe(conn, dict(changes.seen), changes.at)
    touched = {
        *(e[0] for e in changes.status_entries),
        *(k[0] for k in (*changes.matches, *changes.warned, *changes.cleared)),
        *(a[0] for a in changes.acted),
        *(c[0] for c in changes.dry_warnings),
    }
    if touched:
        conn.execute(_TOUCH, (_json(sorted(touched)), at))
    batches: tuple[tuple[str, list[list[Any]]], ...] = (
        (_CLOCKS, [[j, s, to_db(e)] for j, s, e in changes.status_entries]),
        (_MATCHES, [list(k) for k in changes.matches]),
        (_WARNED, [list(k) for k in changes.warned]),
        (_CLEARED, [list(k) for k in changes.cleared]),
        (_ACTED, [list(a) for a in changes.acted]),
        (_CLAIMS, [list(c) for c in changes.dry_warnings]),
    )
    for sql, rows in batches:
        if rows:
            params: tuple[Any, ...] = (_json(rows),) if sql is _CLOCKS else (_json(rows), at)
            conn.execute(sql, params)
    if changes.breaker_open is not None:
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (BREAKER_META_KEY, "1" if changes.breaker_open else "0"),
        )
    if changes.budget_levels:
        conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(f"{BUDGET_META_PREFIX}{name}", level) for name, level in changes.budget_levels],
        )
