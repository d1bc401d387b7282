"""The Tapis Jobs endpoints, as pure functions of the job store and the caller.

Each function returns a `Reply`; the HTTP layer only moves bytes. Messages, codes and shapes
follow the project's Tapis facts page (tapis-jobs 1.7.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from watchdog.sim.jobstate import HistoryEvent, SimJob
from watchdog.sim.search import (
    LIST_TYPES,
    Order,
    Predicate,
    SearchError,
    conditions,
    first_after,
    int_param,
    order_by,
    order_text,
    select_fields,
    start_after_value,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime, timedelta

    from watchdog.sim.store import JobStore

VERSION = "1.7.1"
COMMIT = "5d3e8a1c"
BUILD = "2024-11-20T17:02:11Z"
MAX_EVENT_CHARS = 16_384


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """Who is calling, from the token: username, tenant, and whether a tenant admin."""

    username: str
    tenant: str
    admin: bool = False


def envelope(
    result: bytes,
    message: str,
    *,
    status: int = 200,
    metadata: bytes = b"null",
    ok: bool = True,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """Wrap an already serialised `result` in the Tapis response envelope."""
    body = b"".join(
        (
            b'{"result":',
            result,
            b',"status":',
            b'"success"' if ok else b'"error"',
            b',"message":',
            orjson.dumps(message),
            b',"version":"' + VERSION.encode() + b'","commit":"' + COMMIT.encode(),
            b'","build":"' + BUILD.encode() + b'","metadata":',
            metadata,
            b"}",
        )
    )
    return Reply(status, body, headers=headers or {})


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """A Tapis JSON error: null result, status "error"."""
    return envelope(b"null", message, status=status, ok=False, headers=headers)


def plain(status: int, text: str) -> Reply:
    """A plain-text answer, as Tapis sends for token problems."""
    return Reply(status, text.encode(), content_type="text/plain")


def _metadata(  # noqa: PLR0917 - the six fields of Tapis's list metadata, in order
    count: int, limit: int, skip: int, orders: str | None, after: str | None, total: int
) -> bytes:
    return orjson.dumps(
        {
            "recordCount": count,
            "recordLimit": limit,
            "recordsSkipped": skip,
            "orderBy": orders,
            "startAfter": after,
            "totalCount": total,
        }
    )


def _listed(job: SimJob, caller: Caller, list_type: str) -> bool:
    rec = job.record
    if not rec["visible"] or rec["tenant"] != caller.tenant:
        return False
    mine: bool = rec["owner"] == caller.username
    shared = caller.username in job.shared_with
    if list_type == "MY_JOBS":
        return mine
    if list_type == "SHARED_JOBS":
        return shared and not mine
    return mine or shared


def _legacy_search(text: str) -> list[tuple[str, str]]:
    out = []
    for part in text.split("~"):
        inner = part.strip().removeprefix("(").removesuffix(")")
        pieces = inner.split(".", 2)
        if len(pieces) != 3:
            msg = f"SEARCH_INVALID_SEARCH Cannot parse {part!r}; expected (attr.op.value)."
            raise SearchError(msg)
        out.append((f"{pieces[0]}.{pieces[1]}", pieces[2]))
    return out


@dataclass(frozen=True)
class Query:
    """A parsed search or list request."""

    preds: list[Predicate]
    fields: tuple[str, ...] | str
    limit: int
    skip: int
    orders: tuple[Order, ...]
    list_type: str
    after_raw: str | None
    after: Any
    compute_total: bool


def _bad(message: str) -> SearchError:
    return SearchError(message)


def parse_query(params: Sequence[tuple[str, str]], *, listing: bool) -> Query:
    """Read the reserved parameters and conditions of a search or list request.

    Raises:
        SearchError: anything Tapis would answer with 400.
    """
    flat = dict(params)
    preds = [] if listing else conditions(params)
    if not listing and flat.get("search"):
        preds += conditions(_legacy_search(flat["search"]))
    limit = int_param(flat, "limit", 100)
    skip = int_param(flat, "skip", 0)
    orders = order_by(flat.get("orderBy"))
    list_type = flat.get("listType") or "MY_JOBS"
    after_raw = flat.get("startAfter") or None
    problem = None
    if list_type not in LIST_TYPES:
        problem = f"JOBS_INVALID_LIST_TYPE listType must be one of {sorted(LIST_TYPES)}."
    elif after_raw is not None and not orders:
        problem = "SEARCH_STARTAFTER_NO_ORDERBY startAfter requires orderBy."
    elif after_raw is not None and skip:
        problem = "SEARCH_SKIP_AND_STARTAFTER skip and startAfter cannot both be set."
    elif skip < 0 or limit < -1:
        problem = "SEARCH_INVALID_VALUE limit and skip must not be negative."
    if problem:
        raise _bad(problem)
    return Query(
        preds=preds,
        fields="summary" if listing else select_fields(flat.get("select")),
        limit=limit,
        skip=skip,
        orders=orders,
        list_type=list_type,
        after_raw=after_raw,
        after=start_after_value(orders[0], after_raw) if after_raw is not None else None,
        compute_total=flat.get("computeTotal", "").lower() == "true",
    )


def search(
    store: JobStore, caller: Caller, params: Sequence[tuple[str, str]], *, listing: bool = False
) -> Reply:
    """`GET /jobs/search` (or `/jobs/list` with `listing=True`: summary fields, no conditions)."""
    try:
        q = parse_query(params, listing=listing)
    except SearchError as exc:
        return error(400, str(exc))
    orders, after, preds, list_type = q.orders, q.after, q.preds, q.list_type
    limit, skip, fields = q.limit, q.skip, q.fields
    ordered = store.ordered(orders)
    begin = first_after(ordered, orders[0], after) if after is not None else 0
    wanted = limit if limit >= 0 else len(ordered)
    chosen: list[SimJob] = []
    to_skip = skip
    for job in ordered[begin:] if begin else ordered:
        if not _listed(job, caller, list_type) or not all(p(job) for p in preds):
            continue
        if to_skip:
            to_skip -= 1
        elif len(chosen) < wanted:
            chosen.append(job)
        else:
            break
    total = -1
    if q.compute_total:
        total = sum(
            1 for j in ordered if _listed(j, caller, list_type) and all(p(j) for p in preds)
        )
    if fields == "summary":
        parts = [j.summary_json() for j in chosen]
    elif fields == "all":
        parts = [j.full_json() for j in chosen]
    else:
        parts = [orjson.dumps({k: j.field(k) for k in fields}) for j in chosen]
    meta = _metadata(len(chosen), limit, skip, order_text(orders), q.after_raw, total)
    what = "list" if listing else "search list"
    message = (
        f"JOBS_SEARCH_RESULT_LIST_RETRIEVED Jobs {what} for the user {caller.username} "
        f"in the tenant {caller.tenant} retrieved."
    )
    return envelope(b"[" + b",".join(parts) + b"]", message, metadata=meta)


def not_found(uuid: str, caller: Caller) -> Reply:
    return error(
        400,
        f"JOBS_JOB_SELECT_UUID_ERROR Unable to select job {uuid} for user {caller.username} "
        f"in tenant {caller.tenant}: job not found.",
    )


def mismatched(job: SimJob, caller: Caller) -> Reply:
    return error(
        401,
        f"JOBS_MISMATCHED_OWNER The current owner ({caller.username}) does not match the job "
        f"owner ({job.record['owner']}).",
    )


def find(store: JobStore, caller: Caller, uuid: str, *, write: bool) -> SimJob | Reply:
    """The job, if the caller may read it (`write`: may cancel/hide it), else the error reply."""
    job = store.get(uuid)
    if job is None or job.record["tenant"] != caller.tenant:
        return not_found(uuid, caller)
    rec = job.record
    allowed = caller.admin or caller.username in {rec["owner"], rec["createdby"]}
    if not write:
        allowed = allowed or caller.username in job.shared_with
    return job if allowed else mismatched(job, caller)


def get_job(store: JobStore, caller: Caller, uuid: str) -> Reply:
    job = find(store, caller, uuid, write=False)
    if isinstance(job, Reply):
        return job
    return envelope(job.full_json(), f"JOBS_RETRIEVED Job {uuid} retrieved.")


def get_status(store: JobStore, caller: Caller, uuid: str) -> Reply:
    job = find(store, caller, uuid, write=False)
    if isinstance(job, Reply):
        return job
    result = orjson.dumps({"status": job.status, "condition": job.record["condition"]})
    return envelope(result, f"JOBS_STATUS_RETRIEVED Status of the Job {uuid} retrieved.")


def get_history(
    store: JobStore, caller: Caller, uuid: str, params: Sequence[tuple[str, str]]
) -> Reply:
    job = find(store, caller, uuid, write=False)
    if isinstance(job, Reply):
        return job
    flat = dict(params)
    try:
        limit = int_param(flat, "limit", 100)
        skip = int_param(flat, "skip", 0)
    except SearchError as exc:
        return error(400, str(exc))
    events = job.history[skip:] if limit < 0 else job.history[skip : skip + limit]
    result = orjson.dumps([e.to_json() for e in events])
    meta = _metadata(len(events), limit, skip, None, None, -1)
    message = (
        f"JOBS_HISTORY_RETRIEVED Job {uuid} history retrieved for user {caller.username} "
        f"tenant {caller.tenant}"
    )
    return envelope(result, message, metadata=meta)


def cancel(
    store: JobStore, caller: Caller, uuid: str, now: datetime, default_delay: timedelta
) -> Reply:
    """Accept a cancel and schedule its effect; refuse terminal jobs with 409."""
    job = find(store, caller, uuid, write=True)
    if isinstance(job, Reply):
        return job
    if job.terminal:
        return error(
            409,
            f"JOBS_JOB_IN_TERMINAL_STATE Job {uuid} is in a Terminal state ({job.status}) "
            "and can't be canceled.",
        )
    job.cancels_received += 1
    due = now + (job.cancel_delay if job.cancel_delay is not None else default_delay)
    if job.cancel_mode == "ignore_first" and job.cancels_received == 1:
        store.schedule(job, due, "BLOCKED", None)
    elif job.cancel_mode != "ignore":
        store.schedule(job, due, "CANCELLED", "CANCELLED_BY_USER")
    text = f"Request to cancel job {uuid} has been accepted."
    details = (
        f"JOBS_JOB_CANCEL_ACCEPTED_DETAILS {text} If the job is in a terminal state, the request "
        "will have no effect. If the job is transitioning between active and blocked states, "
        "another cancel request may need to be sent."
    )
    return envelope(orjson.dumps({"message": f"JOBS_JOB_CANCEL_ACCEPTED {text}"}), details)


def set_visible(store: JobStore, caller: Caller, uuid: str, *, visible: bool) -> Reply:
    job = find(store, caller, uuid, write=True)
    if isinstance(job, Reply):
        return job
    job.record["visible"] = visible
    job.touch()
    store.changed()
    state = "visible" if visible else "hidden"
    text = f"JOBS_JOB_CHANGED_VISIBILITY Job {uuid} has been changed to {state}."
    return envelope(orjson.dumps({"message": text}), text)


def send_event(store: JobStore, caller: Caller, uuid: str, body: bytes, now: datetime) -> Reply:
    """Add a JOB_USER_EVENT to a job's history; any user of the tenant may, until the job ends."""
    job = store.get(uuid)
    if job is None or job.record["tenant"] != caller.tenant:
        return not_found(uuid, caller)
    try:
        data: Any = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return error(400, "JOBS_INVALID_JSON The request body is not valid JSON.")
    event_data = data.get("eventData") if isinstance(data, dict) else None
    if not isinstance(event_data, str) or not event_data:
        return error(400, "JOBS_MISSING_EVENT_DATA The eventData field is required.")
    if len(event_data) > MAX_EVENT_CHARS:
        return error(
            400,
            f"JOBS_EVENT_DATA_TOO_LONG eventData has {len(event_data)} characters; "
            f"the limit is {MAX_EVENT_CHARS}.",
        )
    if job.terminal:
        return error(
            400,
            f"JOBS_JOB_IN_TERMINAL_STATE Job {uuid} is in a Terminal state ({job.status}); "
            "user events can no longer be sent.",
        )
    detail = data.get("eventDetail") or "DEFAULT"
    job.add_event(HistoryEvent("JOB_USER_EVENT", now, str(detail), event_data))
    text = f"JOBS_JOB_EVENT_SENT User event sent to job {uuid} by {caller.username}."
    return envelope(orjson.dumps({"message": text}), text)


def health(kind: str) -> Reply:
    return envelope(
        orjson.dumps({"message": f"TAPIS_{kind.upper()}"}),
        f"TAPIS_{kind.upper()} Jobs service is {kind}.",
    )
