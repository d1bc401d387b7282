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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

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
# Every timestamp attribute of a Tapis job record (UTC ISO-8601 ending in Z, or null).
TIMESTAMP_FIELDS: tuple[str, ...] = (
    "created",
    "ended",
    "lastUpdated",
    "remoteSubmitted",
    "remoteStarted",
    "remoteEnded",
    "remoteLastStatusCheck",
)
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

TAPIS_ENV_PREFIX = "_tapis"
"""Environment variables Tapis sets for every job; `input_matches` never searches them."""

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
    """The job's own environment variables; Tapis's `_tapis*` entries are left out when parsed."""
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


def format_timestamp(moment: datetime) -> str:
    """Render a time the way Tapis does: UTC, microseconds, trailing `Z`."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)
"""No Tapis job is older than this: an earlier time in a record is a defect, not a fact."""
FUTURE_SLACK = timedelta(days=1)
"""A time later than this past the clock reading it cannot be true yet."""
CLOCK_SKEW = timedelta(minutes=1)
"""How far a job's later times may read before its `created` (separate hosts stamp them)."""
_CHECKED_TIMES = (
    ("created", "created"),
    ("remoteSubmitted", "remote_submitted"),
    ("remoteStarted", "remote_started"),
    ("ended", "ended"),
)


def implausible_times(job: Job, now: datetime) -> dict[str, str]:
    """The job's times that cannot be true at `now`, by Tapis field, each with the reason.

    A time before 2000, more than a day after `now`, or (for the times after creation) more than
    a minute before `created` is a defect of the record: conditions on it are unknown, never true.
    """
    found: dict[str, str] = {}
    created: datetime | None = None
    for field, attr in _CHECKED_TIMES:
        moment: datetime | None = getattr(job, attr)
        if moment is None:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # Every job is checked on every poll, and almost none is wrong: text only for a defect.
        if moment < EARLIEST_PLAUSIBLE:
            found[field] = f"{field} {format_timestamp(moment)} is before 2000"
        elif moment > now + FUTURE_SLACK:
            found[field] = f"{field} {format_timestamp(moment)} is more than a day in the future"
        elif field == "created":
            created = moment
        elif created is not None and moment < created - CLOCK_SKEW:
            shown, was = format_timestamp(moment), format_timestamp(created)
            found[field] = f"{field} {shown} is before created {was}"
    return found


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
    # The pattern admits only `...Z`, which fromisoformat reads as UTC already.
    return datetime.fromisoformat(value)


# A poll parses every active job, so this path is kept lean: no per-field helper calls, each JSON
# string decoded once, without copying the decoded value again, and strings that recur across
# jobs (environment names, short values, app and system names) stored once.

Loads = Callable[[str], Any]

_SHARED: dict[str, str] = {}
_SHARED_MAX = 1 << 14
_SHARED_LEN = 32
_PAIRS: dict[tuple[str, str], tuple[str, str]] = {}
_FIELD_SETS: dict[frozenset[Any], frozenset[str]] = {}
_FIELD_SETS_MAX = 64
_TEXT_FIELDS = (
    "name",
    "owner",
    "tenant",
    "appId",
    "appVersion",
    "condition",
    "execSystemId",
    "execSystemLogicalQueue",
)
_INT_FIELDS = ("nodeCount", "coresPerNode", "maxMinutes")
_TIME_FIELDS = ("created", "remoteSubmitted", "remoteStarted", "ended", "lastUpdated")
_CHECKED_FIELDS = ("notes", "subscriptions", "execSystemConstraints")
_ARG_LISTS = ("appArgs", "containerArgs", "schedulerOptions")


def _share(text: str) -> str:
    """One copy of a short string that recurs across jobs (the table is bounded: once full, only
    strings already in it are shared)."""
    if len(text) > _SHARED_LEN:
        return text
    found = _SHARED.get(text)
    if found is not None:
        return found
    if len(_SHARED) < _SHARED_MAX:
        _SHARED[text] = text
    return text


def _fast_loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except ValueError:
        # orjson refuses some JSON that json accepts (NaN, lone surrogates): json has the say.
        return json.loads(text)


def _fail(uuid: str, detail: str) -> JobRecordError:
    return JobRecordError(uuid, detail)


def _decoded(record: Mapping[str, Any], key: str, uuid: str, loads: Loads) -> Any:
    """The value of a field Tapis sends as a JSON string, decoded (or already decoded)."""
    value = record.get(key)
    if isinstance(value, str):
        try:
            return loads(value)
        except (ValueError, RecursionError) as exc:
            raise _fail(uuid, f"{key}: malformed JSON string ({exc})") from None
    return to_plain(value)


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _args(uuid: str, params: Mapping[str, Any], key: str) -> tuple[str, ...]:
    entries = params.get(key)
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise _fail(uuid, f"parameterSet.{key}: expected a list, got {type(entries).__name__}")
    args: list[str] = []
    for index, entry in enumerate(entries):
        if not _is_mapping(entry):
            raise _fail(uuid, f"parameterSet.{key}[{index}]: expected an object")
        arg = entry.get("arg")
        # An entry with include=false is not on the command line, so it is not an input.
        if arg is None or entry.get("include") is False:
            continue
        if not isinstance(arg, str):
            raise _fail(uuid, f"parameterSet.{key}[{index}].arg: expected a string")
        args.append(arg)
    return tuple(args)


def _env(uuid: str, params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    entries = params.get("envVariables")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise _fail(uuid, "parameterSet.envVariables: expected a list")
    env: list[tuple[str, str]] = []
    pairs = _PAIRS
    for index, entry in enumerate(entries):
        if type(entry) is not dict and not isinstance(entry, Mapping):
            raise _fail(uuid, f"parameterSet.envVariables[{index}]: expected an object")
        key, value = entry.get("key"), entry.get("value")
        if entry.get("include") is False:
            continue
        if not isinstance(key, str) or not (value is None or isinstance(value, str)):
            raise _fail(uuid, f"parameterSet.envVariables[{index}]: expected string key and value")
        if key.startswith(TAPIS_ENV_PREFIX):
            # Tapis's own (about 27 per job, paths and ids): never an input anyone wrote.
            continue
        pair = (key, value or "")
        shared = pairs.get(pair)
        if shared is None:
            shared = (_share(key), pair[1])
            if len(pair[1]) <= _SHARED_LEN and len(pairs) < _SHARED_MAX:
                pairs[shared] = shared
        env.append(shared)
    return tuple(env)


def _file_inputs(record: Mapping[str, Any], uuid: str, loads: Loads) -> tuple[FileInput, ...]:
    value = _decoded(record, "fileInputs", uuid, loads)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(uuid, f"fileInputs: expected a list, got {type(value).__name__}")
    inputs: list[FileInput] = []
    for index, entry in enumerate(value):
        if not _is_mapping(entry):
            raise _fail(uuid, f"fileInputs[{index}]: expected an object")
        name, source, target = entry.get("name"), entry.get("sourceUrl"), entry.get("targetPath")
        if not all(p is None or isinstance(p, str) for p in (name, source, target)):
            raise _fail(uuid, f"fileInputs[{index}]: name, sourceUrl, targetPath must be strings")
        inputs.append(FileInput(_share(name) if name else "", source or "", target or ""))
    return tuple(inputs)


def _fields(record: Mapping[str, Any]) -> frozenset[str]:
    """The record's attribute names; the same set object for every record of the same shape."""
    keys = frozenset(record)
    found = _FIELD_SETS.get(keys)
    if found is not None:
        return found
    fields = frozenset(str(k) for k in record)
    if len(_FIELD_SETS) < _FIELD_SETS_MAX and all(type(k) is str for k in keys):
        _FIELD_SETS[keys] = fields
    return fields


def parse_job(record: Mapping[str, Any]) -> Job:
    """Parse one job record (a search row or a `getJob` result, as a mapping) into a `Job`.

    Raises:
        JobRecordError: `uuid` or `status` is missing, a timestamp cannot be parsed, a
            JSON-string field is malformed, or a field has the wrong type.
    """
    if not isinstance(record, Mapping):
        raise JobRecordError(None, f"expected a job object, got {type(record).__name__}")
    try:
        return _parse(record, _fast_loads)
    except JobRecordError:
        # orjson turns integers beyond 64 bits into floats; so that a defect is reported exactly
        # as json reads it, a record that fails is read again with json alone.
        return _parse(record, json.loads)


def _parse(record: Mapping[str, Any], loads: Loads) -> Job:  # noqa: C901, PLR0912, PLR0915 - one pass
    get = record.get
    uuid = get("uuid")
    if not isinstance(uuid, str) or not uuid:
        raise JobRecordError(None, "missing uuid")
    status = get("status")
    if not isinstance(status, str) or not status:
        raise _fail(uuid, "missing status")

    params = _decoded(record, "parameterSet", uuid, loads)
    if params is None:
        params = {}
    if not _is_mapping(params):
        raise _fail(uuid, f"parameterSet: expected an object, got {type(params).__name__}")
    for key in _CHECKED_FIELDS:
        value = get(key)
        if value is not None:
            _decoded(record, key, uuid, loads)  # only validated: a malformed record is not acted on

    texts: list[str] = []
    for key in _TEXT_FIELDS:
        value = get(key)
        if value is None:
            texts.append("")
        elif isinstance(value, str):
            texts.append(_share(value))
        else:
            raise _fail(uuid, f"{key}: expected a string, got {type(value).__name__}")
    integers: list[int | None] = []
    for key in _INT_FIELDS:
        value = get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _fail(uuid, f"{key}: expected an integer, got {value!r}")
        integers.append(value)
    tags = get("tags")
    if tags is None:
        tags = ()
    elif isinstance(tags, list | tuple) and all(isinstance(t, str) for t in tags):
        tags = tuple(_share(t) for t in tags)
    else:
        raise _fail(uuid, f"tags: expected a list of strings, got {tags!r}")
    times: list[datetime | None] = []
    for key in _TIME_FIELDS:
        value = get(key)
        try:
            if value is None:
                times.append(None)
            elif type(value) is str and _TIMESTAMP.match(value):
                times.append(datetime.fromisoformat(value))
            else:
                times.append(parse_timestamp(value))
        except (ValueError, OverflowError) as exc:
            raise _fail(uuid, f"{key}: {exc}") from None
    description, last_message = get("description"), get("lastMessage")
    for key, value in (("description", description), ("lastMessage", last_message)):
        if value is not None and not isinstance(value, str):
            raise _fail(uuid, f"{key}: expected a string, got {type(value).__name__}")
    file_inputs = _file_inputs(record, uuid, loads)
    app_args, container_args, scheduler_options = (_args(uuid, params, k) for k in _ARG_LISTS)
    name, owner, tenant, app_id, app_version, condition, exec_system_id, queue = texts
    node_count, cores_per_node, max_minutes = integers
    created, remote_submitted, remote_started, ended, last_updated = times
    return Job(
        uuid=uuid,
        status=_share(status),
        name=name,
        owner=owner,
        tenant=tenant,
        app_id=app_id,
        app_version=app_version,
        condition=condition or None,
        exec_system_id=exec_system_id,
        queue=queue,
        node_count=node_count,
        cores_per_node=cores_per_node,
        max_minutes=max_minutes,
        tags=tags,
        created=created,
        remote_submitted=remote_submitted,
        remote_started=remote_started,
        ended=ended,
        last_updated=last_updated,
        description=description or "",
        last_message=last_message or "",
        file_inputs=file_inputs,
        app_args=app_args,
        container_args=container_args,
        scheduler_options=scheduler_options,
        env=_env(uuid, params),
        fields=_fields(record),
    )


class JobCache:
    """`parse_job` for a daemon's polls: a record unchanged since the last complete poll gives
    back the `Job` parsed from it then.

    Most records are the same from one poll to the next, and parsing is most of what a poll
    costs per job. A record is recognised by its uuid and a fingerprint of every attribute
    (names, values and their types); a changed attribute is a new fingerprint, and the record
    is parsed afresh. Records holding nested objects (not sent by Tapis's search, which sends
    `fileInputs` and `parameterSet` as JSON strings) are parsed every time. Safe to call from
    several threads at once.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, Job]] = {}
        self._next: dict[str, tuple[int, Job]] = {}

    def __len__(self) -> int:
        return len(self._last)

    def parse(self, record: Mapping[str, Any]) -> Job:
        """As `parse_job`.

        Raises:
            JobRecordError: as `parse_job`.
        """
        key = _fingerprint(record)
        uuid = record.get("uuid") if key is not None else None
        if type(uuid) is str:
            hit = self._last.get(uuid)
            if hit is not None and hit[0] == key:
                job = hit[1]
                self._next[job.uuid] = hit  # the kept string: the record's copy goes with it
                return job
        job = parse_job(record)
        if key is not None:
            self._next[job.uuid] = (key, job)
        return job

    def keep(self) -> None:
        """The poll was whole: the next one reuses what this one parsed, and only that (jobs
        no longer listed are forgotten)."""
        self._last, self._next = self._next, {}


def _fingerprint(record: Mapping[str, Any]) -> int | None:
    """A hash of the record's attribute names, values and value types; None for a record
    holding nested objects (or not a plain dict)."""
    if type(record) is not dict:
        return None
    values = record.values()
    try:
        return hash(
            (
                tuple(record),
                tuple(tuple(v) if type(v) is list else v for v in values),
                tuple(map(type, values)),
            )
        )
    except TypeError:
        return None


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
