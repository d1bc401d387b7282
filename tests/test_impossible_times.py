"""Times that cannot be true make a job's time conditions unknown, never true."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from watchdog.config.rule_schema import RuleConfig
from watchdog.jobs import Job, implausible_times
from watchdog.rules.evaluate import compile_rule, evaluate, evaluate_matches
from watchdog.service.defects import DefectLog

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(hours=20)
YEAR_1 = datetime(1, 1, 1, tzinfo=UTC)


def verdict(when: dict[str, Any], **fields: Any) -> tuple[bool, str]:
    rule = compile_rule(RuleConfig.model_validate({"name": "r", "when": when, "action": "cancel"}))
    fields.setdefault("created", CREATED)
    job = Job(uuid="j", status=fields.pop("status", "RUNNING"), **fields)
    (explained,) = evaluate(job, [rule], NOW)
    assert bool(evaluate_matches(job, [rule], NOW)) is explained.matched
    return explained.matched, explained.reason


@pytest.mark.parametrize(
    ("when", "fields", "reason"),
    [
        (
            {"runtime_over": "12h"},
            {"remote_started": YEAR_1},
            "runtime unknown (remoteStarted 0001-01-01T00:00:00.000000Z is before 2000)",
        ),
        (
            {"runtime_over": "1h"},
            {"remote_started": CREATED - timedelta(hours=3)},
            "runtime unknown (remoteStarted",
        ),
        (
            {"node_hours_over": 1},
            {"remote_started": YEAR_1, "node_count": 4},
            "node hours unknown (remoteStarted 0001",
        ),
        (
            {"age_over": "1h"},
            {"created": NOW + timedelta(days=3)},
            "is more than a day in the future",
        ),
        (
            {"in_status_over": "1h"},
            {"remote_started": YEAR_1},
            "time in RUNNING unknown",
        ),
        (
            {"in_status_over": "1h"},
            {"status": "QUEUED", "remote_submitted": datetime(1999, 12, 31, tzinfo=UTC)},
            "time in QUEUED unknown",
        ),
        (
            {"not": {"runtime_over": "1h"}},
            {"remote_started": YEAR_1},
            "runtime unknown",
        ),
    ],
)
def test_an_impossible_time_never_makes_a_condition_true(
    when: dict[str, Any], fields: dict[str, Any], reason: str
) -> None:
    matched, why = verdict(when, **fields)
    assert not matched
    assert reason in why


def test_plausible_times_still_decide() -> None:
    started = CREATED + timedelta(minutes=5)
    assert verdict({"runtime_over": "12h"}, remote_started=started)[0]
    # A start read up to a minute before created is clock skew between hosts, not a defect.
    assert verdict({"runtime_over": "12h"}, remote_started=CREATED - timedelta(seconds=30))[0]
    assert verdict({"age_over": "12h"}, created=datetime(2000, 1, 1, tzinfo=UTC))[0]


def test_each_defect_names_its_field() -> None:
    job = Job(
        uuid="j",
        status="FINISHED",
        created=CREATED,
        remote_submitted=CREATED - timedelta(hours=1),
        remote_started=YEAR_1,
        ended=NOW + timedelta(days=2),
    )
    assert implausible_times(job, NOW) == {
        "remoteSubmitted": "remoteSubmitted 2026-05-31T15:00:00.000000Z is before created "
        "2026-05-31T16:00:00.000000Z",
        "remoteStarted": "remoteStarted 0001-01-01T00:00:00.000000Z is before 2000",
        "ended": "ended 2026-06-03T12:00:00.000000Z is more than a day in the future",
    }


def test_a_defect_is_reported_once_while_it_lasts() -> None:
    log = DefectLog()
    bad = Job(uuid="j", status="RUNNING", created=CREATED, remote_started=YEAR_1)
    good = Job(uuid="k", status="RUNNING", created=CREATED)
    assert [u for u, _ in log.time_defects([bad, good], NOW)] == ["j"]
    log.poll_done(complete=True)
    for _ in range(5):
        assert log.time_defects([bad, good], NOW) == []
        log.poll_done(complete=True)
    # A failed poll forgets nothing; a whole poll without it does, so its return is reported.
    log.poll_done(complete=False)
    assert log.time_defects([bad], NOW) == []
    log.poll_done(complete=True)
    log.poll_done(complete=True)
    assert [u for u, _ in log.time_defects([bad], NOW)] == ["j"]


def test_a_malformed_record_is_reported_once_while_it_lasts() -> None:
    log = DefectLog()
    assert log.is_new(None, "uuid: missing")
    log.poll_done(complete=True)
    assert not log.is_new(None, "uuid: missing")
    assert log.is_new("j", "tags: expected a list")
