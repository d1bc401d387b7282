"""The Job snapshot the rest of the code reads: one Tapis job record, parsed and typed.

Tapis sends timestamps as `...Z` strings and several fields (`fileInputs`, `parameterSet`,
`notes`, `subscriptions`, `execSystemConstraints`) as JSON *strings*; `parse_job` turns a record
into a `Job` with aware UTC datetimes and plain tuples, or raises `JobRecordError`. A search with
a narrow `select` returns only some attributes: what is missing gets a neutral default, and
`Job.fields` says which attributes the record really had.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from watchdog.errors import JobRecordError

ALL_STATUSES: tuple[str, ...] = (
    "PENDING",
    "PROCESSING_INPUTS",
    "STAGING_INPUTS",
    "STAGING_JOB",
    "SUBMITTING_JOB",
    "QUEUED",
    "RUNNING",
    "ARCHIVING",
    "BLOCKED",
    "PAUSED",
    "FINISHED",
    "CANCELLED",
    "FAILED",
)
TERMINAL_STATUSES: frozenset[str] = frozenset({"FINISHED", "FAILED", "CANCELLED"})
ACTIVE_STATUSES: tuple[str, ...] = tuple(s for s in ALL_STATUSES if s not in TERMINAL_STATUSES)

# Attributes every poll selects: what the rule selectors and the time conditions read.
SUMMARY_FIELDS: tuple[str, ...] = (
    "uuid",
    "name",
    "owner",
    "tenant",
    "appId",
    "appVersion",
    "status",
    "condition",
    "created",
    "remoteSubmitted",
    "remoteStarted",
    "ended",
    "lastUpdated",
    "execSystemId",
    "execSystemLogicalQueue",
    "nodeCount",
    "coresPerNode",
    "maxMinutes",
    "tags",
)
# Attributes needed only when some rule uses `input_matches`: they are large, so a poll asks for
# them only then.
INPUT_FIELDS: tuple[str, ...] = ("fileInputs", "parameterSet", "description")

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z$")


@dataclass(frozen=True, slots=True)
class FileInput:
    """One staged input file of a job (`fileInputs[]`)."""

    name: str
    source_url: str
    target_path: str


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one Tapis job, as one poll saw it. Datetimes are aware UTC or None."""

    uuid: str
    status: str
    name: str = ""
    owner: str = ""
    tenant: str = ""
    app_id: str = ""
    app_version: str = ""
    condition: str | None = None
    exec_system_id: str = ""
    queue: str = ""
    node_count: int | None = None
    cores_per_node: int | None = None
    max_minutes: int | None = None
    tags: tuple[str, ...] = ()
    created: datetime | None = None
    remote_submitted: datetime | None = None
    remote_started: datetime | None = None
    ended: datetime | None = None
    last_updated: datetime | None = None
    description: str = ""
    last_message: str = ""
    file_inputs: tuple[FileInput, ...] = ()
    app_args: tuple[str, ...] = ()
    container_args: tuple[str, ...] = ()
    scheduler_options: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    fields: frozenset[str] = frozenset()
    """The Tapis attribute names present in the record this snapshot was parsed from."""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def to_plain(value: Any) -> Any:
    """Turn nested result objects (tapipy's `TapisResult`, anything with attributes) into dicts.

    Mappings, lists and scalars are copied through; an object is read through `vars()`. This lets
    callers hand over tapipy results without this module importing tapipy.
    """
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | datetime):
        return value
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and not isinstance(value, type):
        return {str(k): to_plain(v) for k, v in attrs.items() if not str(k).startswith("_")}
    return value


def parse_timestamp(value: Any) -> datetime | None:
    """Parse a Tapis timestamp (`2021-07-12T23:56:01.790165Z`, 0-6 fractional digits) or None.

    Raises:
        ValueError: the value is neither null, an aware datetime, nor such a string.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}")
        return value.astimezone(UTC)
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        raise ValueError(
            f"expected a UTC timestamp like 2021-07-12T23:56:01.790165Z, got {value!r}"
        )
    return datetime.fromisoformat(value).astimezone(UTC)


class _Reader:
    """Reads typed fields out of one record, turning every defect into a JobRecordError."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        uuid = record.get("uuid")
        self.uuid = uuid if isinstance(uuid, str) and uuid else None

    def fail(self, detail: str) -> JobRecordError:
        return JobRecordError(self.uuid, detail)

    def text(self, key: str) -> str:
        value = self.record.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{key}: expected a string, got {type(value).__name__}")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) or None

    def integer(self, key: str) -> int | None:
        value = self.record.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key}: expected an integer, got {value!r}")
        return value

    def timestamp(self, key: str) -> datetime | None:
        try:
            return parse_timestamp(self.record.get(key))
        except (ValueError, OverflowError) as exc:
            raise self.fail(f"{key}: {exc}") from None

    def tags(self) -> tuple[str, ...]:
        value = self.record.get("tags")
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
            raise self.fail(f"tags: expected a list of strings, got {value!r}")
        return tuple(value)

    def json_field(self, key: str) -> Any:
        """The value of a field Tapis sends as a JSON string, decoded (or already decoded)."""
        value = self.record.get(key)
        if isinstance(value, str):
            try:
                return to_plain(json.loads(value))
            except (ValueError, RecursionError) as exc:
                raise self.fail(f"{key}: malformed JSON string ({exc})") from None
        return to_plain(value)


def _args(reader: _Reader, params: Mapping[str, Any], key: str) -> tuple[str, ...]:
    entries = params.get(key)
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise reader.fail(f"parameterSet.{key}: expected a list, got {type(entries).__name__}")
    args: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise reader.fail(f"parameterSet.{key}[{index}]: expected an object")
        arg = entry.get("arg")
        # An entry with include=false is not on the command line, so it is not an input.
        if arg is None or entry.get("include") is False:
            continue
        if not isinstance(arg, str):
            raise reader.fail(f"parameterSet.{key}[{index}].arg: expected a string")
        args.append(arg)
    return tuple(args)


def _env(reader: _Reader, params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    entries = params.get("envVariables")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise reader.fail("parameterSet.envVariables: expected a list")
    env: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise reader.fail(f"parameterSet.envVariables[{index}]: expected an object")
        key, value = entry.get("key"), entry.get("value")
        if entry.get("include") is False:
            continue
        if not isinstance(key, str) or not isinstance(value, str | None):
            raise reader.fail(f"parameterSet.envVariables[{index}]: expected string key and value")
        env.append((key, value or ""))
    return tuple(env)


def _file_inputs(reader: _Reader) -> tuple[FileInput, ...]:
    value = reader.json_field("fileInputs")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise reader.fail(f"fileInputs: expected a list, got {type(value).__name__}")
    inputs: list[FileInput] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise reader.fail(f"fileInputs[{index}]: expected an object")
        parts = [entry.get(k) for k in ("name", "sourceUrl", "targetPath")]
        if not all(isinstance(p, str | None) for p in parts):
            raise reader.fail(f"fileInputs[{index}]: name, sourceUrl, targetPath must be strings")
        name, source, target = (p or "" for p in parts)
        inputs.append(FileInput(name=name, source_url=source, target_path=target))
    return tuple(inputs)


def parse_job(record: Mapping[str, Any]) -> Job:
    """Parse one job record (a search row or a `getJob` result, as a mapping) into a `Job`.

    Raises:
        JobRecordError: `uuid` or `status` is missing, a timestamp cannot be parsed, a
            JSON-string field is malformed, or a field has the wrong type.
    """
    if not isinstance(record, Mapping):
        raise JobRecordError(None, f"expected a job object, got {type(record).__name__}")
    reader = _Reader(record)
    if reader.uuid is None:
        raise reader.fail("missing uuid")
    status = record.get("status")
    if not isinstance(status, str) or not status:
        raise reader.fail("missing status")

    params = reader.json_field("parameterSet")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise reader.fail(f"parameterSet: expected an object, got {type(params).__name__}")
    for key in ("notes", "subscriptions", "execSystemConstraints"):
        reader.json_field(key)  # only validated: a malformed record is not acted on

    return Job(
        uuid=reader.uuid,
        status=status,
        name=reader.text("name"),
        owner=reader.text("owner"),
        tenant=reader.text("tenant"),
        app_id=reader.text("appId"),
        app_version=reader.text("appVersion"),
        condition=reader.optional_text("condition"),
        exec_system_id=reader.text("execSystemId"),
        queue=reader.text("execSystemLogicalQueue"),
        node_count=reader.integer("nodeCount"),
        cores_per_node=reader.integer("coresPerNode"),
        max_minutes=reader.integer("maxMinutes"),
        tags=reader.tags(),
        created=reader.timestamp("created"),
        remote_submitted=reader.timestamp("remoteSubmitted"),
        remote_started=reader.timestamp("remoteStarted"),
        ended=reader.timestamp("ended"),
        last_updated=reader.timestamp("lastUpdated"),
        description=reader.text("description"),
        last_message=reader.text("lastMessage"),
        file_inputs=_file_inputs(reader),
        app_args=_args(reader, params, "appArgs"),
        container_args=_args(reader, params, "containerArgs"),
        scheduler_options=_args(reader, params, "schedulerOptions"),
        env=_env(reader, params),
        fields=frozenset(str(k) for k in record),
    )


def status_entered_from_history(
    events: Sequence[Mapping[str, Any]], status: str
) -> datetime | None:
    """When the job last entered `status`, from its history (`getJobHistory` results).

    Looks at `JOB_NEW_STATUS` events; the new status is in `eventDetail` (current servers) or
    `jobStatus` (servers of the 1.0 era). Returns the `created` time of the latest such event
    for `status`, or None when the history never shows the job entering it.

    Raises:
        JobRecordError: a matching event's `created` time is missing or cannot be parsed (an
            unreadable history must not be mistaken for an old entry).
    """
    latest: datetime | None = None
    for index, raw in enumerate(events):
        event = to_plain(raw)
        if not isinstance(event, Mapping) or event.get("event") != "JOB_NEW_STATUS":
            continue
        detail, legacy = event.get("eventDetail"), event.get("jobStatus")
        new_status = detail if detail in ALL_STATUSES else legacy
        if new_status != status:
            continue
        try:
            created = parse_timestamp(event.get("created"))
        except (ValueError, OverflowError) as exc:
            raise JobRecordError(None, f"history event {index}: created: {exc}") from None
        if created is None:
            raise JobRecordError(None, f"history event {index}: created is missing")
        if latest is None or created > latest:
            latest = created
    return latest
