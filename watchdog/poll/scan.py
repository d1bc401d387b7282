"""One poll: every active job of the identity, whole, or `PollError` and nothing at all.

Completeness under churn is the point. Jobs change status while a poll pages through them, so
`skip` paging over a status filter shifts under it and can skip a job that was active the whole
time. This module pages by key instead, the one way the Jobs service supports: `orderBy=uuid(asc)`
with a `uuid.gt=<last uuid seen>` condition (the service's `startAfter` is declared an int and
never used, and a uuid there is a 404). A job's uuid never changes, so a job that stays active for
the whole poll matches every page's conditions and is reached by the scan whatever moves around it.

`list_type: ALL_JOBS` is two such scans, `MY_JOBS` and `SHARED_JOBS`, merged by uuid: the service
answers `ALL_JOBS` as an own page with a shared page appended, which is not one ordered list.

When the first page is full, the rest of the uuid key space may be cut into disjoint ranges
(`uuid.gte`/`uuid.lt`; the first range continues after the first page, the last one is
open-ended, so together they cover every string) and the ranges are scanned concurrently, each
by key. Ranges pay only when the server answers slowly and can answer several requests at once;
they cost a few more pages and, against a server that is the bottleneck already, slow the poll
down. So by default a scan goes on in one range and, after its second page, splits what is left
only when that page's latency projects a one-range scan longer than `SPLIT_AFTER_S`. How many
pages are left is estimated from how far into the (random, uniformly spread) uuid key space the
cursor got, so no `computeTotal` count is asked of the server. Within a range the next page is
fetched while the current one is parsed. The poll makes only search requests, never one per job.

The order is the server's collation, which Tapis's code does not fix. The cursor is always the
last uuid of the page as the server ordered it, so keyset paging holds under any collation; only
splitting assumes byte order (its bounds are hex prefixes), so a scan whose pages are not in byte
order is never split. A server that answers a uuid twice within one scan is not applying the
`uuid.gt` condition: that fails the poll rather than looping.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from watchdog.errors import JobRecordError, PollError, TapisAuthError, TapisError
from watchdog.jobs import Job, parse_job

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from watchdog.tapis.client import SearchPage, TapisClient

ORDER_BY = "uuid(asc)"
_KEY_FIELDS = ("uuid", "status")
_HEX_DIGITS = frozenset("0123456789abcdef")
_PREFIX = 8
_KEY_SPACE: int = 16**_PREFIX

SPLIT_AFTER_S = 10.0
"""A one-range scan projected to take longer than this (pages x page latency) is split."""

Parse = Callable[[Mapping[str, Any]], Job]
"""Turns one search record into a `Job` (`parse_job`, or `JobCache.parse`)."""

OnMalformed = Callable[[str | None, str], None]
"""`on_malformed(job_uuid, detail)`: a record that could not be read, skipped by this poll."""


@dataclass(frozen=True, slots=True)
class PollResult:
    """Every active job one poll saw, and what the poll cost."""

    jobs: tuple[Job, ...]
    pages: int
    api_calls: int
    malformed: int
    duration_s: float
    ranges: int = 1
    """How many key ranges the pages after the first were scanned in (summed over the scans)."""
    scans: tuple[str, ...] = ("MY_JOBS",)
    """The list types scanned: `ALL_JOBS` is `MY_JOBS` and `SHARED_JOBS`."""


@dataclass(frozen=True, slots=True)
class _Range:
    """A slice of the uuid key space: after `gt` (exclusive), from `gte`, below `lt`."""

    gt: str | None = None
    gte: str | None = None
    lt: str | None = None


def scans_for(list_type: str) -> tuple[str, ...]:
    """The list types one poll scans for `list_type`, each on its own by key."""
    if list_type == "ALL_JOBS":
        return ("MY_JOBS", "SHARED_JOBS")
    return (list_type,)


async def poll_jobs(
    client: TapisClient,
    *,
    statuses: Sequence[str],
    list_type: str,
    page_size: int,
    fields: Sequence[str],
    on_malformed: OnMalformed | None = None,
    max_ranges: int | None = None,
    parse: Parse = parse_job,
    conditions: Mapping[str, str] | None = None,
) -> PollResult:
    """List every job of the identity whose status is in `statuses`, with `fields` selected
    (and every other condition of `conditions`, such as `ended.gt`).

    Each list type of `scans_for(list_type)` is scanned by key; the scans run concurrently and
    their jobs are merged by uuid (a job both own and shared is one job). By default
    (`max_ranges=None`) the pages after a scan's first are scanned in one key range unless the
    second page's latency projects that scan longer than `SPLIT_AFTER_S`; then what is left is
    split into up to the client's concurrency ranges. An explicit `max_ranges` splits right after
    the first page whenever more pages follow, into up to that many ranges (one page each at
    least). Each record becomes a `Job` through `parse` (the daemon's `JobCache.parse` reuses the
    jobs of unchanged records); records that cannot be parsed are reported through
    `on_malformed` and skipped.

    Raises:
        PollError: a page could not be fetched (after the client's retries) or Tapis answered a
            uuid twice in one scan; the cause is chained. Nothing from a failed poll may be acted
            on.
        TapisAuthError: the identity can no longer log in (fatal, not a poll failure).
    """
    poll = _Poll(
        client,
        statuses=statuses,
        page_size=page_size,
        fields=fields,
        on_malformed=on_malformed,
        parse=parse,
    )
    poll.conditions = {**poll.conditions, **(conditions or {})}
    scans = scans_for(list_type)
    started = time.perf_counter()
    try:
        await poll.run(scans, max_ranges, client.max_concurrency)
    except TapisAuthError:
        raise
    except TapisError as exc:
        raise PollError(
            "poll", f"{exc}; nothing from this poll is acted on", http_status=exc.http_status
        ) from exc
    return PollResult(
        jobs=tuple(poll.jobs[uuid] for uuid in sorted(poll.jobs)),
        pages=poll.pages,
        api_calls=poll.api_calls,
        malformed=poll.malformed,
        duration_s=time.perf_counter() - started,
        ranges=sum(scan.ranges for scan in poll.scans) or 1,
        scans=scans,
    )


class _Poll:
    """What the scans of one poll share: the client, the query and what was seen."""

    def __init__(
        self,
        client: TapisClient,
        *,
        statuses: Sequence[str],
        page_size: int,
        fields: Sequence[str],
        on_malformed: OnMalformed | None,
        parse: Parse = parse_job,
    ) -> None:
        if not statuses:
            raise ValueError("a poll needs at least one status")
        if page_size < 1:
            raise ValueError(f"page_size must be > 0: {page_size}")
        self.client = client
        self.conditions: Mapping[str, str] = {"status.in": ",".join(statuses)}
        self.page_size = page_size
        self.select = select_for(fields)
        self._on_malformed = on_malformed
        self._parse = parse
        self.jobs: dict[str, Job] = {}
        self.pages = 0
        self.api_calls = 0
        self.malformed = 0
        self.scans: list[_Scan] = []
        self.failures: list[TapisError] = []

    async def run(self, scans: Sequence[str], max_ranges: int | None, concurrency: int) -> None:
        self.scans = [_Scan(self, list_type) for list_type in scans]
        async with anyio.create_task_group() as tg:
            for scan in self.scans:
                tg.start_soon(self.run_or_stop, tg, scan.run, max_ranges, concurrency, tg)
        if self.failures:
            raise self.failures[0]

    async def run_or_stop(
        self, tg: TaskGroup, work: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        # The error is kept, not raised, so it does not arrive wrapped in a group.
        try:
            await work(*args)
        except TapisError as exc:
            self.failures.append(exc)
            tg.cancel_scope.cancel()

    async def keep_page(self, page: SearchPage) -> None:
        # Parsed in a worker thread: the event loop thread then waits in the selector without the
        # GIL, so the thread fetching the next page gets it, sends its request and the server
        # works on it while this page is parsed. Parsed in the event loop thread, the loop only
        # ever let go of the GIL for an instant and that request went out after the parse.
        jobs, bad = await anyio.to_thread.run_sync(_parse_page, page.records, self._parse)
        for job in jobs:
            self.jobs.setdefault(job.uuid, job)
        self.malformed += len(bad)
        if self._on_malformed is not None:
            for uuid, detail in bad:
                self._on_malformed(uuid, detail)


class _Scan:
    """One list type's keyset scan: its first page, then one range or several."""

    def __init__(self, poll: _Poll, list_type: str) -> None:
        self._poll = poll
        self.list_type = list_type
        self.ranges = 0
        self.byte_order = True
        """Every page so far came in byte order: only then may the key space be split."""
        self._undecided: int | None = None
        """The concurrency to split with after the second page, if still undecided."""

    async def run(self, max_ranges: int | None, concurrency: int, tg: TaskGroup) -> None:
        first = await self._fetch(_Range(), None)
        first_seen: set[str] = set()
        last = self._advance(first, None, first_seen)
        if not self._is_full(first) or last is None:
            self.ranges = 1
            await self._poll.keep_page(first)
            return
        if max_ranges is None:
            # Decided after the next page: one page says little about the server's latency.
            self._undecided = concurrency
            ranges = [_Range(gt=last)]
        else:
            pages = pages_left(last, pages_done=1) if self.byte_order else None
            count = ranges_needed(
                pages, latency_s=0.0, max_ranges=max_ranges, concurrency=concurrency
            )
            ranges = split_after(last, count)
        self.ranges = len(ranges)
        tg.start_soon(self._poll.keep_page, first)
        for index, key_range in enumerate(ranges):
            # The range right after the first page knows its uuids, to count a repeat once.
            seen = first_seen if index == 0 else set()
            tg.start_soon(self._poll.run_or_stop, tg, self._scan, key_range, tg, seen)

    async def _scan(self, key_range: _Range, tg: TaskGroup, seen: set[str] | None = None) -> None:
        seen = set() if seen is None else seen
        cursor = key_range.gt
        asked = time.perf_counter()
        page = await self._fetch(key_range, cursor)
        latency = time.perf_counter() - asked
        while True:
            cursor = self._advance(page, cursor, seen)
            if not self._is_full(page):
                await self._poll.keep_page(page)
                return
            if (concurrency := self._undecided) is not None and cursor is not None:
                self._undecided = None
                key_range = self._split_rest(concurrency, key_range, cursor, latency, tg)
            # The next page needs only the cursor: fetch it while this one is parsed.
            upcoming: list[SearchPage | TapisError] = []
            async with anyio.create_task_group() as pair:
                pair.start_soon(self._fetch_into, upcoming, key_range, cursor)
                await self._poll.keep_page(page)
            if isinstance(upcoming[0], TapisError):
                raise upcoming[0]
            page = upcoming[0]

    def _split_rest(
        self, concurrency: int, key_range: _Range, cursor: str, latency: float, tg: TaskGroup
    ) -> _Range:
        """How many ranges the key space after `cursor` is scanned in (decided once, after the
        second page): start the others and return the one this scan continues with."""
        rest = pages_left(cursor, pages_done=2) if self.byte_order else None
        count = ranges_needed(rest, latency_s=latency, max_ranges=None, concurrency=concurrency)
        if count <= 1:
            return key_range
        ranges = split_after(cursor, count)
        self.ranges = len(ranges)
        for other in ranges[1:]:
            tg.start_soon(self._poll.run_or_stop, tg, self._scan, other, tg)
        return ranges[0]

    async def _fetch_into(
        self, into: list[SearchPage | TapisError], key_range: _Range, cursor: str | None
    ) -> None:
        # The error is handed over, not raised, so it does not arrive wrapped in a group.
        try:
            into.append(await self._fetch(key_range, cursor))
        except TapisError as exc:
            into.append(exc)

    async def _fetch(self, key_range: _Range, cursor: str | None) -> SearchPage:
        poll = self._poll
        conditions = dict(poll.conditions)
        if cursor is not None:
            conditions["uuid.gt"] = cursor
        elif key_range.gte is not None:
            conditions["uuid.gte"] = key_range.gte
        if key_range.lt is not None:
            conditions["uuid.lt"] = key_range.lt
        page = await poll.client.search_jobs(
            conditions=conditions,
            select=poll.select,
            limit=poll.page_size,
            order_by=ORDER_BY,
            list_type=self.list_type,
        )
        poll.pages += 1
        poll.api_calls += page.requests
        return page

    def _is_full(self, page: SearchPage) -> bool:
        # A server that caps the page size says so in recordLimit; a short page is the last one.
        return len(page.records) >= (page.record_limit or self._poll.page_size)

    def _advance(self, page: SearchPage, cursor: str | None, seen: set[str]) -> str | None:
        """The new cursor after `page`: its last uuid not seen before, in the server's order.

        What cannot hurt is tolerated: a uuid already seen in this scan counts once (the job is
        kept once), and a record without a uuid is skipped (reported as malformed when parsed),
        the cursor staying on the last good uuid.

        Raises:
            TapisError: a full page brought no uuid not seen before: the server is not applying
                `uuid.gt`, and paging on would never end.
        """
        fresh = 0
        for record in page.records:
            uuid = _uuid_of(record)
            if uuid is None or uuid in seen:
                continue
            seen.add(uuid)
            fresh += 1
            if cursor is not None and uuid <= cursor:
                # Another collation than byte order: page on by the server's order, never split.
                self.byte_order = False
            cursor = uuid
        if fresh == 0 and self._is_full(page):
            raise TapisError(
                "search_jobs",
                f"a full page of the {self.list_type} scan brought no job not seen before: the "
                "server did not apply the uuid.gt condition",
            )
        return cursor


def _parse_page(
    records: Sequence[Any], parse: Parse
) -> tuple[list[Job], list[tuple[str | None, str]]]:
    """The jobs of a page's records, and (uuid, defect) for each record that could not be read."""
    jobs: list[Job] = []
    bad: list[tuple[str | None, str]] = []
    for record in records:
        try:
            jobs.append(parse(record))
        except JobRecordError as exc:
            bad.append((_uuid_of(record), exc.detail))
    return jobs, bad


def select_for(fields: Sequence[str]) -> tuple[str, ...]:
    """The `select` a poll sends for `fields`: the keyset fields first, each attribute once."""
    return tuple(dict.fromkeys((*_KEY_FIELDS, *fields)))


def key_position(uuid: str) -> float | None:
    """Where `uuid` lies in the hex key space, from 0 to 1 (None: not a hex uuid)."""
    prefix = uuid[:_PREFIX]
    if len(prefix) < _PREFIX or not set(prefix) <= _HEX_DIGITS:
        return None
    return int(prefix, 16) / _KEY_SPACE


def pages_left(cursor: str, *, pages_done: int) -> int | None:
    """How many pages follow once a scan from the start reached `cursor` in `pages_done` pages.

    Tapis uuids are random, so the part of the key space behind the cursor holds the same share
    of the jobs; None when the cursor is not a hex uuid (or still at the very start).
    """
    position = key_position(cursor)
    if position is None or position <= 0:
        return None
    return math.ceil(pages_done * (1 - position) / position)


def ranges_needed(
    pages: int | None, *, latency_s: float, max_ranges: int | None, concurrency: int
) -> int:
    """How many key ranges to scan the `pages` after the first in (at least 1).

    `max_ranges` given: up to that many, one page each at least. Otherwise one range unless the
    projected one-range scan (`pages` x one page's `latency_s`) exceeds `SPLIT_AFTER_S`;
    then one range per `SPLIT_AFTER_S` of it, up to `concurrency`. An unknown count is one range.
    """
    if pages is None or pages <= 1:
        return 1
    if max_ranges is not None:
        return max(1, min(max_ranges, pages))
    projected = pages * latency_s
    if projected <= SPLIT_AFTER_S:
        return 1
    return max(1, min(concurrency, pages, math.ceil(projected / SPLIT_AFTER_S)))


def _uuid_of(record: Any) -> str | None:
    uuid = record.get("uuid") if isinstance(record, Mapping) else None
    return uuid if isinstance(uuid, str) and uuid else None


def split_after(last: str, count: int) -> list[_Range]:
    """Cut the key space after `last` into up to `count` disjoint ranges that cover all of it.

    Boundaries are spread over hex uuid prefixes; a key that is not a hex uuid gets one range.
    """
    prefix = last[:_PREFIX]
    if count <= 1 or len(prefix) < _PREFIX or not set(prefix) <= _HEX_DIGITS:
        return [_Range(gt=last)]
    start = int(prefix, 16) + 1
    if start >= _KEY_SPACE:
        return [_Range(gt=last)]
    bounds = sorted(
        {f"{start + (_KEY_SPACE - start) * i // count:0{_PREFIX}x}" for i in range(1, count)}
    )
    ranges = [_Range(gt=last, lt=bounds[0])]
    ranges += [_Range(gte=lo, lt=hi) for lo, hi in itertools.pairwise(bounds)]
    ranges.append(_Range(gte=bounds[-1]))
    return ranges
