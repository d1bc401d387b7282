"""The Tapis Jobs endpoints, as pure functions of the job store and the caller.

Each function returns a `Reply`; the HTTP layer only moves bytes. Messages, codes and shapes
follow the project's Tapis facts page (tapis-jobs 1.7.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from watchdog.sim.jobstate import HistoryEvent, SimJob

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime, timedelta

    from watchdog.sim.store import JobStore

VERSION = "1.7.1"
COMMIT = "5d3e8a1c"
BUILD = "2024-11-20T17:02:11Z"
MAX_EVENT_CHARS = 16_384
MAX_DETAIL_CHARS = 64


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str | None = "application/json"
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


def _missing(uuid: str, message: str) -> Reply:
    """A 404 the Jobs resources build with `createSuccessResponse`: status "success", the name."""
    return envelope(orjson.dumps({"name": uuid}), message, status=404)


def _readable(store: JobStore, caller: Caller, uuid: str) -> SimJob | Reply:
    """`JobsImpl.getJobStatusByUuid(..., JOB_HISTORY, READ)` and the resource's checks after it:
    an unknown job is a 404 TAPIS_NOT_FOUND, a hidden one a 404 JOBS_JOB_NOT_VISIBLE."""
    job = store.get(uuid)
    if job is None:
        return _missing(uuid, f"TAPIS_NOT_FOUND Job not found: {uuid}")
    if job.record["tenant"] != caller.tenant:
        # JOBS_MISMATCHED_TENANT, rethrown by the sharing wrapper as INTERNAL_SERVER_ERROR.
        return error(
            500,
            f"JOBS_MISMATCHED_TENANT The current tenant id ({caller.tenant}) does not match the "
            f"job tenant id ({job.record['tenant']}).",
        )
    found = find(store, caller, uuid, write=False)
    if isinstance(found, Reply):
        return found
    if not job.record["visible"]:
        return _missing(
            uuid, f"JOBS_JOB_NOT_VISIBLE Job {uuid} is not visible in tenant {caller.tenant}."
        )
    return job


def get_job(store: JobStore, caller: Caller, uuid: str) -> Reply:
    """`JobGetResource.getJob`: an unknown uuid fails inside the sharing wrapper of
    `JobsImpl.getJobByUuid`, which rethrows it as INTERNAL_SERVER_ERROR: a 500."""
    job = store.get(uuid)
    if job is None or job.record["tenant"] != caller.tenant:
        reply = not_found(uuid, caller)
        return Reply(500, reply.body, reply.content_type)
    found = find(store, caller, uuid, write=False)
    if isinstance(found, Reply):
        return found
    return envelope(job.full_json(), f"JOBS_RETRIEVED Job {uuid} retrieved.")


def get_status(store: JobStore, caller: Caller, uuid: str) -> Reply:
    """`JobStatusResource.getJobStatus`."""
    job = _readable(store, caller, uuid)
    if isinstance(job, Reply):
        return job
    result = orjson.dumps({"status": job.status, "condition": job.record["condition"]})
    return envelope(result, f"JOBS_STATUS_RETRIEVED Status of the Job {uuid} retrieved.")


def get_history(store: JobStore, caller: Caller, uuid: str, *, limit: int, skip: int) -> Reply:
    """`JobHistoryResource.getJobHistory`: `limit`/`skip` as the shared request filter read them
    (100 and 0 by default), the job checked like `getJobStatus`."""
    job = _readable(store, caller, uuid)
    if isinstance(job, Reply):
        return job
    skip = max(skip, 0)
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
            f"JOBS_JOB_IN_TERMINAL_STATE Job {uuid} is in a Terminal state (CANCELLED, FINISHED "
            "or FAILED) and can't be canceled.",
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


def _event_problem(data: Any) -> str | None:  # noqa: PLR0911 - one answer per rule
    """`UserEventRequest.json` (no other keys, `eventData` 1-16,384 characters, `eventDetail`
    1-64) and `ReqUserEvent.validate` (`eventData` not blank, `eventDetail` `[a-zA-Z0-9_]+`)."""
    if not isinstance(data, dict):
        return "the body is not a JSON object"
    if extra := sorted(set(data) - {"eventData", "eventDetail"}):
        return f"additional properties are not allowed: {extra}"
    event_data, detail = data.get("eventData"), data.get("eventDetail", "DEFAULT")
    if not isinstance(event_data, str) or not 1 <= len(event_data) <= MAX_EVENT_CHARS:
        return f"eventData must be a string of 1 to {MAX_EVENT_CHARS} characters"
    if not isinstance(detail, str) or not 1 <= len(detail) <= MAX_DETAIL_CHARS:
        return f"eventDetail must be a string of 1 to {MAX_DETAIL_CHARS} characters"
    if not event_data.strip():
        return "TAPIS_NULL_PARAMETER eventData is blank"
    if detail.strip() and not re.fullmatch(r"[a-zA-Z0-9_]+", detail):
        return f"TAPIS_INVALID_PARAMETER eventDetail {detail} (only alphanumerics and underscores)"
    return None


def send_event(store: JobStore, caller: Caller, uuid: str, body: bytes, now: datetime) -> Reply:
    """`JobSubmitResource.sendEvent`: the body is checked first, then the job; any user of the
    tenant may send, until the job ends (400 JOBS_IN_TERMINAL_STATE)."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return error(
            400, f"NET_REQUEST_PAYLOAD_ERROR Error accessing payload for sendEvent request: {exc}"
        )
    if problem := _event_problem(data):
        return error(
            400,
            f"NET_REQUEST_PAYLOAD_ERROR Error accessing payload for sendEvent request: {problem}",
        )
    job = store.get(uuid)
    if job is None:
        return not_found(uuid, caller)
    if job.record["tenant"] != caller.tenant:
        return error(
            400,
            f"JOBS_MISMATCHED_TENANT The current tenant id ({caller.tenant}) does not match the "
            f"job tenant id ({job.record['tenant']}).",
        )
    if job.terminal:
        return error(
            400,
            f"JOBS_IN_TERMINAL_STATE Job {uuid} is in terminal state {job.status} and cannot "
            "be updated.",
        )
    detail = data.get("eventDetail") or "DEFAULT"
    if not detail.strip():
        detail = "DEFAULT"
    job.add_event(HistoryEvent("JOB_USER_EVENT", now, detail, data["eventData"]))
    return envelope(
        orjson.dumps(f"JOB_USER_EVENT {uuid}"), "TAPIS_CREATED event created: JOB_USER_EVENT"
    )


def health(kind: str) -> Reply:
    return envelope(
        orjson.dumps({"message": f"TAPIS_{kind.upper()}"}),
        f"TAPIS_{kind.upper()} Jobs service is {kind}.",
    )
