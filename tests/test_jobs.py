from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.errors import JobRecordError
from watchdog.jobs import (
    ACTIVE_STATUSES,
    ALL_STATUSES,
    INPUT_FIELDS,
    SUMMARY_FIELDS,
    TERMINAL_STATUSES,
    FileInput,
    Job,
    parse_job,
    status_entered_from_history,
    to_plain,
)

# Shaped like the "Get Job Details" example of the Tapis documentation.
PARAMETER_SET = {
    "appArgs": [
        {"name": "n", "arg": "-n 100", "include": None},
        {"name": "off", "arg": "--debug", "include": False},
    ],
    "containerArgs": [{"arg": "--bind /scratch/x"}],
    "schedulerOptions": [{"arg": "-A DesignSafe-01"}, {"arg": None}],
    "envVariables": [
        {"key": "_tapisJobUUID", "value": "ba34f946-007"},
        {"key": "MODE", "value": "fast"},
        {"key": "EMPTY", "value": None},
    ],
    "archiveFilter": {"includes": [], "excludes": [], "includeLaunchFiles": True},
}
RECORD: dict[str, Any] = {
    "id": 1711,
    "uuid": "ba34f946-8a18-44c4-9b25-19e21dfadf69-007",
    "name": "SyRunSleepSeconds",
    "owner": "testuser2",
    "tenant": "dev",
    "description": "Sleep for a specified amount of time",
    "status": "RUNNING",
    "condition": None,
    "lastMessage": "Setting job status to RUNNING.",
    "created": "2021-07-12T23:56:01.790165Z",
    "ended": None,
    "lastUpdated": "2021-07-12T23:56:20.9Z",
    "appId": "SyRunSleepSeconds",
    "appVersion": "0.0.1",
    "execSystemId": "frontera",
    "execSystemLogicalQueue": "normal",
    "nodeCount": 4,
    "coresPerNode": 56,
    "maxMinutes": 240,
    "fileInputs": json.dumps(
        [{"name": "mesh", "sourceUrl": "tapis://corral/mesh.tmp", "targetPath": "mesh.dat"}]
    ),
    "parameterSet": json.dumps(PARAMETER_SET),
    "execSystemConstraints": None,
    "subscriptions": "[]",
    "notes": '{"project": "PRJ-1"}',
    "remoteSubmitted": "2021-07-12T23:56:20Z",
    "remoteStarted": "2021-07-12T23:56:20.900039Z",
    "tags": ["singularity", "sleep"],
}


def test_parse_full_record() -> None:
    job = parse_job(RECORD)
    assert job.uuid == RECORD["uuid"]
    assert (job.name, job.owner, job.tenant, job.status) == (
        "SyRunSleepSeconds",
        "testuser2",
        "dev",
        "RUNNING",
    )
    assert (job.app_id, job.app_version, job.exec_system_id, job.queue) == (
        "SyRunSleepSeconds",
        "0.0.1",
        "frontera",
        "normal",
    )
    assert (job.node_count, job.cores_per_node, job.max_minutes) == (4, 56, 240)
    assert job.tags == ("singularity", "sleep")
    assert job.created == datetime(2021, 7, 12, 23, 56, 1, 790165, tzinfo=UTC)
    assert job.last_updated == datetime(2021, 7, 12, 23, 56, 20, 900000, tzinfo=UTC)
    assert job.remote_submitted == datetime(2021, 7, 12, 23, 56, 20, tzinfo=UTC)
    assert job.ended is None
    assert job.condition is None
    assert job.description == "Sleep for a specified amount of time"
    assert job.file_inputs == (FileInput("mesh", "tapis://corral/mesh.tmp", "mesh.dat"),)
    assert job.app_args == ("-n 100",)
    assert job.container_args == ("--bind /scratch/x",)
    assert job.scheduler_options == ("-A DesignSafe-01",)
    assert job.env == (("MODE", "fast"), ("EMPTY", ""))  # Tapis's own _tapis* left out
    assert "fileInputs" in job.fields
    assert not job.is_terminal


def test_already_parsed_json_fields_are_accepted() -> None:
    record = {
        **RECORD,
        "fileInputs": json.loads(RECORD["fileInputs"]),
        "parameterSet": PARAMETER_SET,
        "subscriptions": [],
        "notes": {"a": 1},
    }
    assert parse_job(record) == parse_job(RECORD)


class Result:
    """Shaped like tapipy's TapisResult: attributes, nested."""

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, Result(**value) if isinstance(value, dict) else value)


def test_nested_result_objects_are_read_through_their_attributes() -> None:
    record = {**RECORD, "parameterSet": Result(**PARAMETER_SET)}
    assert parse_job(record).app_args == ("-n 100",)
    assert to_plain(Result(a=1, b={"c": [Result(d=2)]})) == {"a": 1, "b": {"c": [{"d": 2}]}}


def test_narrow_select_gets_defaults() -> None:
    job = parse_job({"uuid": "u-1", "status": "QUEUED"})
    assert job == Job(uuid="u-1", status="QUEUED", fields=frozenset({"uuid", "status"}))
    assert job.node_count is None
    assert job.file_inputs == ()
    assert job.tags == ()


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"uuid": None}, "missing uuid"),
        ({"uuid": ""}, "missing uuid"),
        ({"status": None}, "missing status"),
        ({"status": 3}, "missing status"),
        ({"created": "2021-07-12 23:56:01Z"}, "created: expected a UTC timestamp"),
        ({"created": "2021-07-12T23:56:01.1234567Z"}, "created: expected a UTC timestamp"),
        ({"created": "2021-07-12T23:56:01+00:00"}, "created: expected a UTC timestamp"),
        ({"remoteStarted": "2021-13-12T23:56:01Z"}, "remoteStarted: month must be in 1..12"),
        ({"ended": 1626134161}, "ended: expected a UTC timestamp"),
        ({"fileInputs": "[{"}, "fileInputs: malformed JSON string"),
        ({"parameterSet": "{'appArgs': []}"}, "parameterSet: malformed JSON string"),
        ({"notes": "{nope"}, "notes: malformed JSON string"),
        ({"subscriptions": "[1,"}, "subscriptions: malformed JSON string"),
        ({"execSystemConstraints": "]"}, "execSystemConstraints: malformed JSON string"),
        ({"fileInputs": '{"a": 1}'}, "fileInputs: expected a list"),
        ({"fileInputs": "[1]"}, "fileInputs[0]: expected an object"),
        ({"fileInputs": '[{"sourceUrl": 5}]'}, "fileInputs[0]: name, sourceUrl, targetPath"),
        ({"parameterSet": "[]"}, "parameterSet: expected an object"),
        ({"parameterSet": '{"appArgs": {}}'}, "parameterSet.appArgs: expected a list"),
        ({"parameterSet": '{"appArgs": [{"arg": 1}]}'}, "parameterSet.appArgs[0].arg"),
        ({"parameterSet": '{"envVariables": [{"key": 1}]}'}, "parameterSet.envVariables[0]"),
        ({"nodeCount": "4"}, "nodeCount: expected an integer"),
        ({"nodeCount": True}, "nodeCount: expected an integer"),
        ({"name": 7}, "name: expected a string"),
        ({"tags": "a,b"}, "tags: expected a list of strings"),
    ],
)
def test_bad_records_raise_job_record_error(change: dict[str, Any], detail: str) -> None:
    with pytest.raises(JobRecordError) as caught:
        parse_job({**RECORD, **change})
    assert detail in caught.value.detail
    expected_uuid = None if "uuid" in change else RECORD["uuid"]
    assert caught.value.job_uuid == expected_uuid


def test_a_non_mapping_record_is_refused() -> None:
    with pytest.raises(JobRecordError):
        parse_job(["not", "a", "job"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2024-01-02T03:04:05Z", 0),
        ("2024-01-02T03:04:05.1Z", 100000),
        ("2024-01-02T03:04:05.12Z", 120000),
        ("2024-01-02T03:04:05.123Z", 123000),
        ("2024-01-02T03:04:05.1234Z", 123400),
        ("2024-01-02T03:04:05.12345Z", 123450),
        ("2024-01-02T03:04:05.123456Z", 123456),
    ],
)
def test_timestamps_with_zero_to_six_fraction_digits(text: str, micro: int) -> None:
    job = parse_job({"uuid": "u", "status": "RUNNING", "created": text})
    assert job.created == datetime(2024, 1, 2, 3, 4, 5, micro, tzinfo=UTC)


def test_status_constants() -> None:
    assert sorted(TERMINAL_STATUSES) == ["CANCELLED", "FAILED", "FINISHED"]
    assert ACTIVE_STATUSES[:7] == (
        "PENDING",
        "PROCESSING_INPUTS",
        "STAGING_INPUTS",
        "STAGING_JOB",
        "SUBMITTING_JOB",
        "QUEUED",
        "RUNNING",
    )
    assert {"ARCHIVING", "BLOCKED", "PAUSED"} <= set(ACTIVE_STATUSES)
    assert set(ACTIVE_STATUSES) | TERMINAL_STATUSES == set(ALL_STATUSES)
    assert not set(ACTIVE_STATUSES) & TERMINAL_STATUSES
    assert {"uuid", "status", "remoteStarted", "nodeCount", "execSystemLogicalQueue"} <= set(
        SUMMARY_FIELDS
    )
    assert set(INPUT_FIELDS) == {"fileInputs", "parameterSet", "description"}


def _event(status: str, created: str | None, *, legacy: bool = False) -> dict[str, Any]:
    key = "jobStatus" if legacy else "eventDetail"
    return {"event": "JOB_NEW_STATUS", "created": created, key: status, "description": "..."}


HISTORY = [
    _event("PENDING", "2024-01-01T00:00:00Z"),
    _event("STAGING_INPUTS", "2024-01-01T00:01:00Z"),
    {"event": "JOB_INPUT_TRANSACTION_ID", "created": "garbage", "eventDetail": "STAGING_INPUTS"},
    _event("BLOCKED", "2024-01-01T01:00:00Z"),
    _event("STAGING_INPUTS", "2024-01-01T02:00:00.5Z"),
    {"event": "JOB_USER_EVENT", "created": "2024-01-01T03:00:00Z", "eventDetail": "QUEUED"},
]


@pytest.mark.parametrize(
    ("history", "status", "expected"),
    [
        (HISTORY, "STAGING_INPUTS", datetime(2024, 1, 1, 2, 0, 0, 500000, tzinfo=UTC)),
        (HISTORY, "BLOCKED", datetime(2024, 1, 1, 1, tzinfo=UTC)),
        (HISTORY, "QUEUED", None),
        ([], "PENDING", None),
        (
            [_event("STAGING_JOB", "2021-07-12T23:56:10.226013Z", legacy=True)],
            "STAGING_JOB",
            datetime(2021, 7, 12, 23, 56, 10, 226013, tzinfo=UTC),
        ),
        (
            # Not in list order: the latest time wins.
            [_event("PAUSED", "2024-01-02T00:00:00Z"), _event("PAUSED", "2024-01-01T00:00:00Z")],
            "PAUSED",
            datetime(2024, 1, 2, tzinfo=UTC),
        ),
    ],
)
def test_status_entered_from_history(
    history: list[dict[str, Any]], status: str, expected: datetime | None
) -> None:
    assert status_entered_from_history(history, status) == expected


@pytest.mark.parametrize("created", [None, "yesterday"])
def test_unreadable_history_time_raises(created: str | None) -> None:
    with pytest.raises(JobRecordError):
        status_entered_from_history([_event("PAUSED", created)], "PAUSED")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
keys = st.sampled_from([*SUMMARY_FIELDS, *INPUT_FIELDS, "notes", "subscriptions"]) | st.text(
    max_size=6
)


identity = st.fixed_dictionaries(
    {},
    optional={
        "uuid": st.text(min_size=1, max_size=8) | json_values,
        "status": st.sampled_from(ALL_STATUSES) | json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(identity, st.dictionaries(keys, json_values | json_values.map(json.dumps), max_size=12))
def test_parse_job_returns_a_job_or_raises_job_record_error(
    ids: dict[str, Any], fields: dict[str, Any]
) -> None:
    record = {**fields, **ids}
    outcome: Job | JobRecordError
    try:
        outcome = parse_job(record)
    except JobRecordError as exc:
        outcome = exc
    if isinstance(outcome, Job):
        assert outcome.uuid == record["uuid"]
        assert outcome.status == record["status"]
    else:
        assert str(outcome).startswith("job ")


def test_json_strings_are_read_as_json_reads_them() -> None:
    # NaN and lone surrogates are not strict JSON, yet json reads them: so does parse_job.
    job = parse_job(
        {
            "uuid": "u",
            "status": "RUNNING",
            "parameterSet": '{"appArgs": [{"arg": "\\ud800"}], "scale": NaN}',
        }
    )
    assert job.app_args == ("\ud800",)
    # An integer beyond 64 bits is an int, so a defect names it as one.
    with pytest.raises(JobRecordError) as caught:
        parse_job({"uuid": "u", "status": "RUNNING", "fileInputs": "1" * 30})
    assert caught.value.detail == "fileInputs: expected a list, got int"


def test_records_of_one_shape_and_odd_keys() -> None:
    first = parse_job({**RECORD, "uuid": "a"})
    second = parse_job({**RECORD, "uuid": "b"})
    assert first.fields == second.fields == frozenset(RECORD)
    assert first.env == second.env
    odd = parse_job({"uuid": "u", "status": "QUEUED", 7: "x"})  # type: ignore[dict-item]
    assert odd.fields == frozenset({"uuid", "status", "7"})
    assert first.created is not None
    assert first.created.tzinfo is UTC
