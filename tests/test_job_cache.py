"""JobCache: a record unchanged since the last whole poll gives back the Job parsed then, and
anything else is exactly what parse_job makes of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.errors import JobRecordError
from watchdog.jobs import JobCache, parse_job

ENV = [
    {"key": "_tapisJobUUID", "value": "j-1", "include": True},
    {"key": "ALLOCATION_OVERRIDE", "value": "yes", "include": True},
]


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uuid": "j-1",
        "status": "RUNNING",
        "name": "run",
        "nodeCount": 2,
        "tags": ["sweep"],
        "remoteStarted": "2024-06-01T10:00:00.000000Z",
        "fileInputs": json.dumps([{"name": "in", "sourceUrl": "tapis://s/a", "targetPath": "a"}]),
        "parameterSet": json.dumps({"envVariables": ENV}),
    }
    base.update(changes)
    return base


def test_an_unchanged_record_gives_back_the_job_of_the_last_whole_poll() -> None:
    cache = JobCache()
    first = cache.parse(record())
    assert cache.parse(record()) is not first  # nothing kept before the poll was whole
    cache.keep()
    again = cache.parse(record())
    assert again is not first  # the second parse of the first poll is what was kept
    assert again == first == parse_job(record())
    cache.keep()
    assert cache.parse(record()) is again


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "QUEUED"},
        {"nodeCount": 3},
        {"tags": ["sweep", "x"]},
        {"remoteStarted": None},
        {"parameterSet": json.dumps({"envVariables": [*ENV, {"key": "A", "value": "b"}]})},
        {"fileInputs": json.dumps([{"sourceUrl": "tapis://s/tmp/a"}])},
        {"extra": 1},
    ],
)
def test_a_changed_record_is_parsed_again(changes: dict[str, Any]) -> None:
    cache = JobCache()
    cache.parse(record())
    cache.keep()
    assert cache.parse(record(**changes)) == parse_job(record(**changes))


def test_a_value_of_another_type_is_not_mistaken_for_the_same_value() -> None:
    cache = JobCache()
    cache.parse(record(nodeCount=1))
    cache.keep()
    with pytest.raises(JobRecordError, match="nodeCount"):
        cache.parse(record(nodeCount=True))  # True == 1 and hashes alike


def test_jobs_not_listed_by_a_whole_poll_are_forgotten() -> None:
    cache = JobCache()
    cache.parse(record())
    cache.parse(record(uuid="j-2"))
    cache.keep()
    assert len(cache) == 2
    cache.parse(record())
    cache.keep()
    assert len(cache) == 1


def test_records_with_nested_objects_are_parsed_every_time() -> None:
    nested = record(fileInputs=[{"sourceUrl": "tapis://s/a"}])
    cache = JobCache()
    first = cache.parse(nested)
    cache.keep()
    second = cache.parse(nested)
    assert second == first == parse_job(nested)
    assert second is not first
    assert len(cache) == 0


def test_tapis_own_environment_is_left_out() -> None:
    assert parse_job(record()).env == (("ALLOCATION_OVERRIDE", "yes"),)


values = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["", "a", "RUNNING"])
records = st.fixed_dictionaries(
    {"uuid": st.just("j-1"), "status": st.sampled_from(["RUNNING", "QUEUED", 1])},
    optional={
        "nodeCount": values,
        "name": values,
        "tags": st.lists(values, max_size=2),
        "created": st.sampled_from([None, "2024-06-01T10:00:00Z", "bad", 0]),
    },
)


def outcome(parse: Any, rec: dict[str, Any]) -> Any:
    try:
        return parse(rec)
    except JobRecordError as exc:
        return ("error", exc.detail)


@settings(max_examples=300, deadline=None)
@given(first=records, second=records)
def test_the_cache_answers_what_parse_job_answers(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    cache = JobCache()
    outcome(cache.parse, first)
    cache.keep()
    assert outcome(cache.parse, second) == outcome(parse_job, second)
