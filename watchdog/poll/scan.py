"""One poll: every active job of the identity, whole, or `PollError` and nothing at all.

Completeness under churn is the point. Jobs change status while a poll pages through them, so
`skip` paging over a status filter shifts under it and can skip a job that was active the whole
time. This module pages by key instead: `orderBy=uuid(asc)` with `startAfter=<last uuid>`. A job's
uuid never changes, so a job that stays active for the whole poll is in every answer's filter and
is reached by the scan whatever moves around it.

When the first page shows more pages to come (`computeTotal=true` gives the total), the rest of the
uuid key space may be cut into disjoint ranges (`uuid.gte`/`uuid.lt`; the first range continues
after the first page, the last one is open-ended, so together they cover every string) and the
ranges are scanned concurrently, each by key. Ranges pay only when the server answers slowly and
can answer several requests at once; they cost a few more pages and, against a server that is
the bottleneck already, slow the poll down. So by default the poll scans on in one range and,
after the second page (the first also counts the total, so its latency says little), splits what
is left only when that page's latency projects a one-range scan longer than `SPLIT_AFTER_S`: into
about one range per `SPLIT_AFTER_S` of projected scan. Within a range the next page is fetched
while the current one is parsed. The poll makes only search requests, never one per job.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
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
_KEY_SPACE = 16**_PREFIX

SPLIT_AFTER_S = 10.0
"""A one-range scan projected to take longer than this (pages x first-page latency) is split."""

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
    """How many key ranges the pages after the first were scanned in."""


@dataclass(frozen=True, slots=True)
class _Undecided:
    """A split left to decide after the second page: the pages after the first, the limit."""

    pages: int | None
    concurrency: int


@dataclass(frozen=True, slots=True)
class _Range:
    """A slice of the uuid key space: after `start_after` (exclusive), from `gte`, below `lt`."""

    start_after: str | None = None
    gte: str | None = None
    lt: str | None = None


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
) -> PollResult:
    """List every job of the identity whose status is in `statuses`, with `fields` selected.

    By default (`max_ranges=None`) the pages after the first are scanned in one key range unless
    the second page's latency projects that scan longer than `SPLIT_AFTER_S`; then what is left
    is split into up to the client's concurrency ranges. An explicit `max_ranges` splits right
    after the first page whenever more pages follow, into up to that many ranges (one page each
    at least). Each record becomes a `Job` through `parse` (the daemon's `JobCache.parse`
    reuses the jobs of unchanged records); records that cannot be parsed are reported through
    `on_malformed` and skipped.

    Raises:
        PollError: a page could not be fetched (after the client's retries) or Tapis answered
            pages out of order; the cause is chained. Nothing from a failed poll may be acted on.
        TapisAuthError: the identity can no longer log in (fatal, not a poll failure).
    """
    poll = _Poll(
        client,
        statuses=statuses,
        list_type=list_type,
        page_size=page_size,
        fields=fields,
        on_malformed=on_malformed,
        parse=parse,
    )
    started = time.perf_counter()
    try:
        await poll.run(max_ranges, client.max_concurrency)
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
        ranges=poll.ranges,
    )


class _Poll:
    def __init__(
        self,
        client: TapisClient,
        *,
        statuses: Sequence[str],
        list_type: str,
        page_size: int,
        fields: Sequence[str],
        on_malformed: OnMalformed | None,
        parse: Parse = parse_job,
    ) -> None:
        if not statuses:
            raise ValueError("a poll needs at least one status")
        if page_size < 1:
            raise ValueError(f"page_size must be > 0: {page_size}")
        self._client = client
        self._conditions: Mapping[str, str] = {"status.in": ",".join(statuses)}
        self._list_type = list_type
        self._page_size = page_size
        self._select = select_for(fields)
        self._on_malformed = on_malformed
        self._parse = parse
        self.jobs: dict[str, Job] = {}
        self.pages = 0
        self.api_calls = 0
        self.malformed = 0
        self.ranges = 1
        self._undecided: _Undecided | None = None
        self._failures: list[TapisError] = []

    async def run(self, max_ranges: int | None, concurrency: int) -> None:
        first = await self._fetch(_Range(), compute_total=True)
        last = self._advance(first, None)
        if not self._is_full(first) or last is None:
            await self._keep_page(first)
            return
        pages = pages_left(first.total, len(first.records), self._page_size)
        if max_ranges is None:
            # Decided after the next page: the first one's latency includes counting the total.
            self._undecided = _Undecided(pages, concurrency)
            ranges = [_Range(start_after=last)]
        else:
            count = ranges_needed(
                pages, latency_s=0.0, max_ranges=max_ranges, concurrency=concurrency
            )
            ranges = split_after(last, count)
        self.ranges = len(ranges)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_page, first)
            for key_range in ranges:
                tg.start_soon(self._scan_or_stop, key_range, tg)
        if self._failures:
            raise self._failures[0]

    async def _scan_or_stop(self, key_range: _Range, tg: TaskGroup) -> None:
        # The error is kept, not raised, so it does not arrive wrapped in a group.
        try:
            await self._scan(key_range, tg)
        except TapisError as exc:
            self._failures.append(exc)
            tg.cancel_scope.cancel()

    async def _scan(self, key_range: _Range, tg: TaskGroup) -> None:
        cursor = key_range.start_after
        asked = time.perf_counter()
        page = await self._fetch(key_range, start_after=cursor)
        latency = time.perf_counter() - asked
        while True:
            cursor = self._advance(page, cursor)
            if not self._is_full(page):
                await self._keep_page(page)
                return
            if (undecided := self._undecided) is not None and cursor is not None:
                self._undecided = None
                key_range = self._split_rest(undecided, key_range, cursor, latency, tg)
            # The next page needs only the cursor: fetch it while this one is parsed.
            upcoming: list[SearchPage | TapisError] = []
            async with anyio.create_task_group() as pair:
                pair.start_soon(self._fetch_into, upcoming, key_range, cursor)
                await self._keep_page(page)
            if isinstance(upcoming[0], TapisError):
                raise upcoming[0]
            page = upcoming[0]

    def _split_rest(
        self,
        undecided: _Undecided,
        key_range: _Range,
        cursor: str,
        latency: float,
        tg: TaskGroup,
    ) -> _Range:
        """How many ranges the key space after `cursor` is scanned in (decided once, after the
        second page): start the others and return the one this scan continues with."""
        rest = None if undecided.pages is None else undecided.pages - 1
        count = ranges_needed(
            rest, latency_s=latency, max_ranges=None, concurrency=undecided.concurrency
        )
        if count <= 1:
            return key_range
        ranges = split_after(cursor, count)
        self.ranges = len(ranges)
        for other in ranges[1:]:
            tg.start_soon(self._scan_or_stop, other, tg)
        return ranges[0]

    async def _fetch_into(
        self, into: list[SearchPage | TapisError], key_range: _Range, start_after: str | None
    ) -> None:
        # The error is handed over, not raised, so it does not arrive wrapped in a group.
        try:
            into.append(await self._fetch(key_range, start_after=start_after))
        except TapisError as exc:
            into.append(exc)

    async def _fetch(
        self, key_range: _Range, *, start_after: str | None = None, compute_total: bool = False
    ) -> SearchPage:
        conditions = dict(self._conditions)
        if key_range.gte is not None:
            conditions["uuid.gte"] = key_range.gte
        if key_range.lt is not None:
            conditions["uuid.lt"] = key_range.lt
        page = await self._client.search_jobs(
            conditions=conditions,
            select=self._select,
            limit=self._page_size,
            order_by=ORDER_BY,
            start_after=start_after,
            list_type=self._list_type,
            compute_total=compute_total,
        )
        self.pages += 1
        self.api_calls += page.requests
        return page

    def _is_full(self, page: SearchPage) -> bool:
        # A server that caps the page size says so in recordLimit; a short page is the last one.
        return len(page.records) >= (page.record_limit or self._page_size)

    def _advance(self, page: SearchPage, cursor: str | None) -> str | None:
        """The new cursor after `page`: its last uuid.

        Raises:
            TapisError: the page is not in uuid order after the cursor, or its last record has no
                uuid, so the scan cannot continue safely.
        """
        for record in page.records:
            uuid = _uuid_of(record)
            if uuid is not None:
                if cursor is not None and uuid <= cursor:
                    raise TapisError(
                        "search_jobs", f"records out of uuid order ({uuid} after {cursor})"
                    )
                cursor = uuid
        if page.records and _uuid_of(page.records[-1]) is None:
            raise TapisError("search_jobs", "the last record of a page has no uuid")
        return cursor

    async def _keep_page(self, page: SearchPage) -> None:
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


def pages_left(total: int | None, first_page: int, page_size: int) -> int | None:
    """How many pages follow a full first page of `first_page` records (None: unknown total)."""
    if total is None:
        return None
    return math.ceil(max(0, total - first_page) / page_size)


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
        return [_Range(start_after=last)]
    start = int(prefix, 16) + 1
    if start >= _KEY_SPACE:
        return [_Range(start_after=last)]
    bounds = sorted(
        {f"{start + (_KEY_SPACE - start) * i // count:0{_PREFIX}x}" for i in range(1, count)}
    )
    ranges = [_Range(start_after=last, lt=bounds[0])]
    ranges += [_Range(gte=lo, lt=hi) for lo, hi in itertools.pairwise(bounds)]
    ranges.append(_Range(gte=bounds[-1]))
    return ranges
