"""The shape of a Tapis job record: statuses, field names and types, and time formats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from watchdog.durations import parse_relative
from watchdog.jobs import TIMESTAMP_FIELDS as JOB_TIMESTAMP_FIELDS

MAIN_PATH = (
    "PENDING",
    "PROCESSING_INPUTS",
    "STAGING_INPUTS",
    "STAGING_JOB",
    "SUBMITTING_JOB",
    "QUEUED",
    "RUNNING",
    "ARCHIVING",
    "FINISHED",
)
TERMINAL = frozenset({"FINISHED", "FAILED", "CANCELLED"})
STATUSES = frozenset({*MAIN_PATH, "FAILED", "CANCELLED", "BLOCKED", "PAUSED"})

SUMMARY_FIELDS = (
    "uuid",
    "name",
    "owner",
    "appId",
    "created",
    "status",
    "condition",
    "remoteStarted",
    "ended",
    "tenant",
    "execSystemId",
    "archiveSystemId",
    "appVersion",
    "lastUpdated",
)
TIMESTAMP_FIELDS = frozenset(JOB_TIMESTAMP_FIELDS)
INT_FIELDS = frozenset(
    {
        "id",
        "nodeCount",
        "coresPerNode",
        "memoryMB",
        "maxMinutes",
        "blockedCount",
        "remoteSubmitRetries",
        "remoteChecksSuccess",
        "remoteChecksFailed",
    }
)
BOOL_FIELDS = frozenset(
    {"mpi", "visible", "archiveOnAppError", "dynamicExecSystem", "sharedAppCtx"}
)
JSON_STRING_FIELDS = frozenset(
    {"fileInputs", "parameterSet", "notes", "subscriptions", "execSystemConstraints"}
)
LIST_FIELDS = frozenset({"tags", "sharedAppCtxAttribs"})

# Every field of a job record, in the order Tapis sends them.
ALL_FIELDS = (
    "id", "name", "owner", "tenant", "description", "status", "condition", "lastMessage",
    "created", "ended", "lastUpdated", "uuid", "appId", "appVersion", "archiveOnAppError",
    "dynamicExecSystem", "execSystemId", "execSystemExecDir", "execSystemInputDir",
    "execSystemOutputDir", "execSystemLogicalQueue", "archiveSystemId", "archiveSystemDir",
    "dtnSystemId", "dtnMountSourcePath", "dtnMountPoint", "nodeCount", "coresPerNode",
    "memoryMB", "maxMinutes", "fileInputs", "parameterSet", "execSystemConstraints",
    "subscriptions", "blockedCount", "remoteJobId", "remoteJobId2", "remoteOutcome",
    "remoteResultInfo", "remoteQueue", "remoteSubmitted", "remoteStarted", "remoteEnded",
    "remoteSubmitRetries", "remoteChecksSuccess", "remoteChecksFailed", "remoteLastStatusCheck",
    "inputTransactionId", "inputCorrelationId", "archiveTransactionId", "archiveCorrelationId",
    "stageAppTransactionId", "stageAppCorrelationId", "dtnInputTransactionId",
    "dtnInputCorrelationId", "dtnOutputTransactionId", "dtnOutputCorrelationId", "tapisQueue",
    "visible", "createdby", "createdbyTenant", "tags", "jobType", "mpi", "mpiCmd", "cmdPrefix",
    "sharedAppCtx", "sharedAppCtxAttribs", "notes", "trackingId",
)  # fmt: skip

# Keys a fleet may give beside record fields: simulator behaviour and input shorthands.
SIM_KEYS = frozenset(
    {
        "history",
        "shared_with",
        "cancel",
        "cancel_delay",
        "live",
        "inputs",
        "app_args",
        "container_args",
        "scheduler_options",
        "env",
    }
)
CANCEL_MODES = frozenset({"honour", "ignore_first", "ignore"})

SYSTEMS = {
    "frontera": ("normal", "/scratch1/05234", "frontera.tacc.utexas.edu"),
    "stampede3": ("skx", "/scratch/09876", "stampede3.tacc.utexas.edu"),
    "ls6": ("normal", "/scratch/07000", "ls6.tacc.utexas.edu"),
}
DEFAULT_CONDITIONS = {
    "FINISHED": "NORMAL_COMPLETION",
    "CANCELLED": "CANCELLED_BY_USER",
    "FAILED": "SCHEDULER_TERMINATED",
}


def parse_ts(text: str) -> datetime:
    """Read a Tapis timestamp (or a bare date) as an aware UTC datetime.

    Raises:
        ValueError: the text is not an ISO-8601 time or date.
    """
    moment = datetime.fromisoformat(text.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve_time(value: Any, start: datetime) -> datetime | None:
    """A fleet time: None, a datetime, an ISO string, or a signed offset from `start` (`-13h`).

    Raises:
        ValueError: the value is none of these.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ("+", "-") or (
            text[:1].isdigit() and text[-1:] in "dhms" and ":" not in text
        ):
            return start + parse_relative(text)
        return parse_ts(text)
    msg = f"expected a time such as -13h or 2024-05-01T12:00:00Z, got {value!r}"
    raise ValueError(msg)
