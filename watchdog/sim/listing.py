"""`GET /jobs/search` and `GET /jobs/list`, answered as the Jobs service's code answers them.

Read off tapis-jobs 1.7.1 and tapis-shared-java (rows in `docs/tapis-conformance.md`):

- The shared request filter (`QueryParametersRequestFilter.filter`) runs first, only when one of
  its parameters is present, and refuses with **plain-text** 400s: a parameter given twice, a
  non-integer `limit`/`skip`, a bad `orderBy` item or attribute name, a bad `search`,
  `startAfter` without `orderBy`, `startAfter` beside any `skip`.
- The resource method declares `limit`, `skip` and `startAfter` as `int` query parameters, so a
  `startAfter` that is not an int fails the parameter conversion: 404 with an empty body. An int
  is accepted and then ignored: `startAfter` is only echoed in `metadata`.
- Every other non-reserved parameter is a condition (`SearchUtils.buildListFromQueryParms`; a bad
  form is a JSON 400 `JOBS_SEARCH_LIST_ERROR`); `search=` is checked by the filter but never
  applied. An unknown `select` attribute is a JSON 400, a `listType` other than the three
  (case-sensitive) a JSON 400 `JOBS_SEARCH_INVALID_LISTTYPE_ERROR`, an unknown attribute or a bad
  value in a condition or an unknown `orderBy` column a JSON 500 (the DAO throws).
- `JobsDao`: `ORDER BY orderBy LIMIT limit OFFSET skip`, nothing else; `limit=-1` keeps the order
  and the offset only for summary attributes, and drops both for a `select` list (as does any
  limit below -1). `MY_JOBS` is `owner = caller`; `SHARED_JOBS` is the jobs shared with the caller
  (`uuid IN (...)`, any owner); `ALL_JOBS` is the own page, then a page of shared jobs with the
  limit left over appended after it, each ordered on its own.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from watchdog.sim.api import Caller, Reply, envelope, error
from watchdog.sim.queryfilter import Paging, as_int, form_problem, prefix, request_filter
from watchdog.sim.schema import ALL_FIELDS
from watchdog.sim.search import Order, Predicate, SearchError, condition

if TYPE_CHECKING:
    from collections.abc import Sequence

    from watchdog.sim.jobstate import SimJob
    from watchdog.sim.store import JobStore

DEFAULT_LIMIT = 100
LIST_TYPES = ("MY_JOBS", "SHARED_JOBS", "ALL_JOBS")
RESERVED = frozenset(
    {"PRETTY", "SELECT", "SEARCH", "ORDERBY", "LIMIT", "SKIP", "STARTAFTER", "COMPUTETOTAL",
     "LISTTYPE"}
)  # fmt: skip


def _snake(name: str) -> str:
    """`SearchUtils.camelCaseToSnakeCase`."""
    step = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", step).lower()


_COLUMNS = {_snake(f): f for f in ALL_FIELDS}


@dataclass(frozen=True, slots=True)
class _Scan:
    preds: list[Predicate]
    orders: tuple[Order, ...]
    low: str | None
    """The greatest `uuid.gt`/`uuid.gte` bound, when the scan is in uuid order: a place to start."""


def search(  # noqa: C901, PLR0911, PLR0912 - the resource's checks, in its order
    store: JobStore, caller: Caller, params: Sequence[tuple[str, str]], *, listing: bool = False
) -> Reply:
    """`JobSearchResource.getJobSearchList` (or `JobListingResource.getJobList`: `listing`)."""
    paging = request_filter(params, caller)
    if isinstance(paging, Reply):
        return paging
    if paging.start_after is not None and as_int(paging.start_after) is None:
        # Jersey cannot convert the declared `int startAfter`: NotFoundException, no entity.
        return Reply(404, b"", content_type=None)
    flat = dict(params)
    conds: list[tuple[str, str]] = []
    if not listing:
        for key, value in params:
            if key.upper() in RESERVED:
                continue
            if problem := form_problem(f"{key}.{value}"):
                who = prefix(caller)
                return error(
                    400, f"JOBS_SEARCH_LIST_ERROR Unable to validate search list. {who} {problem}"
                )
            conds.append((key, value))
    limit = paging.limit if paging.limit is not None else DEFAULT_LIMIT
    select = () if listing else paging.select
    for key in select:
        if _snake(key) not in _COLUMNS and key not in {"allAttributes", "summaryAttributes"}:
            return error(
                400,
                f"JOBS_SEARCH_INVALID_SELECTLIST_ERROR Invalid select string {key} for jobs "
                f"search for user {caller.username} tenant {caller.tenant}.",
            )
    list_type = flat.get("listType", "MY_JOBS")
    if list_type not in LIST_TYPES:
        return error(
            400,
            f"JOBS_SEARCH_INVALID_LISTTYPE_ERROR Invalid listType {caller.tenant} for jobs "
            f"listing for user {caller.username} tenant in {caller.tenant}.",
        )
    try:
        scan = _compile(conds, paging.orders)
    except SearchError as exc:
        return error(500, f"JOBS_SEARCHLIST_ERROR {caller.username} {caller.tenant} {exc}")
    summary = not select or "summaryAttributes" in select
    if "allAttributes" in select:
        summary = False
    chosen, total = _run(
        store,
        caller=caller,
        scan=scan,
        list_type=list_type,
        paging=paging,
        limit=limit,
        summary=summary,
    )
    if summary or "allAttributes" in select:
        parts = [j.summary_json() if summary else j.full_json() for j in chosen]
    else:
        parts = [orjson.dumps(_selected(j, select)) for j in chosen]
    if not chosen:
        message = (
            "JOBS_SEARCH_NO_JOBS_FOUND No Jobs found satisfying the search criteria for the "
            f"user {caller.tenant} in the tenant {caller.username}"
        )
        total = -1 if summary else total
    else:
        what = "list" if listing else "search list"
        message = (
            f"JOBS_SEARCH_RESULT_LIST_RETRIEVED Jobs {what} for the user {caller.username} "
            f"in the tenant {caller.tenant} retrieved."
        )
        if paging.compute_total and limit <= 0 and paging.skip == 0:
            total = len(chosen)
    meta = orjson.dumps(
        {
            "recordCount": len(chosen),
            "recordLimit": limit,
            "recordsSkipped": paging.skip,
            "orderBy": paging.order_text,
            "startAfter": paging.start_after,
            "totalCount": total,
        }
    )
    return envelope(b"[" + b",".join(parts) + b"]", message, metadata=meta)


def _selected(job: SimJob, select: Sequence[str]) -> dict[str, Any]:
    """`RespJobSearchSelectAttributes.addDisplayAttributes`: exact field names, uuid added."""
    out = {k: job.field(k) for k in ALL_FIELDS if k in select}
    if "id" not in select and "uuid" not in select:
        out["uuid"] = job.uuid
    return out


def _compile(conds: Sequence[tuple[str, str]], orders: Sequence[tuple[str, bool]]) -> _Scan:
    """The conditions and order as the DAO applies them.

    Raises:
        SearchError: an unknown attribute or a bad value (the DAO's exception: a 500).
    """
    preds = [condition(key, value) for key, value in conds]
    compiled = []
    for name, desc in orders:
        field = _COLUMNS.get(_snake(name))
        if field is None:
            msg = f"SEARCH_ORDERBY_DB_NO_COLUMN Unable to find the column name in DB: {name}"
            raise SearchError(msg)
        compiled.append(Order(field, desc))
    low = None
    if compiled and compiled[0] == Order("uuid", desc=False):
        bounds = [v for k, v in conds if k.lower() in {"uuid.gt", "uuid.gte"}]
        low = max(bounds) if bounds else None
    return _Scan(preds, tuple(compiled), low)


def _run(
    store: JobStore,
    *,
    caller: Caller,
    scan: _Scan,
    list_type: str,
    paging: Paging,
    limit: int,
    summary: bool,
) -> tuple[list[SimJob], int]:
    """The page and the total (-1 unless asked), own part first, then the shared part."""
    user, tenant = caller.username, caller.tenant

    def own(job: SimJob) -> bool:
        rec = job.record
        return bool(rec["visible"]) and rec["tenant"] == tenant and rec["owner"] == user

    def shared(job: SimJob) -> bool:
        rec = job.record
        return bool(rec["visible"]) and rec["tenant"] == tenant and user in job.shared_with

    any_shared = list_type != "MY_JOBS" and store.has_shares(user)
    skip = max(paging.skip, 0)
    chosen: list[SimJob] = []
    if list_type != "SHARED_JOBS":
        chosen = _select(store, scan, own, limit, skip, summary=summary)
    total = -1
    if paging.compute_total:
        total = 0 if list_type == "SHARED_JOBS" else _count(store, scan, own)
        if list_type != "MY_JOBS":
            total += _count(store, scan, shared) if any_shared else 0
    if any_shared:
        if chosen:
            more_limit, more_skip = limit - len(chosen), 0
        elif list_type == "SHARED_JOBS":
            more_limit, more_skip = limit, paging.skip
        else:
            owned = _count(store, scan, own)
            more_limit, more_skip = limit, paging.skip - owned if owned <= paging.skip else 0
        chosen += _select(store, scan, shared, more_limit, max(more_skip, 0), summary=summary)
    return chosen, total


def _select(
    store: JobStore,
    scan: _Scan,
    listed: Any,
    limit: int,
    skip: int,
    *,
    summary: bool,
) -> list[SimJob]:
    """`SELECT ... WHERE ... [ORDER BY ...] [LIMIT ...] [OFFSET ...]` as `JobsDao` builds it."""
    ordered = limit >= 0 or (summary and limit == -1)
    jobs: Sequence[SimJob] = store.ordered(scan.orders) if ordered else store.ordered(())
    begin = 0
    if ordered and scan.low is not None:
        # Keyset paging: the uuid-ordered list can start at the bound (the conditions still apply).
        begin = bisect.bisect_left(jobs, scan.low, key=lambda j: j.uuid)
    if not ordered:
        skip = 0
    out: list[SimJob] = []
    preds = scan.preds
    for job in jobs[begin:] if begin else jobs:
        if not listed(job) or not all(p(job) for p in preds):
            continue
        if skip:
            skip -= 1
        elif limit < 0 or len(out) < limit:
            out.append(job)
        else:
            break
    return out


def _count(store: JobStore, scan: _Scan, listed: Any) -> int:
    return sum(1 for j in store if listed(j) and all(p(j) for p in scan.preds))


__all__ = ["LIST_TYPES", "search"]
