from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.config.rule_schema import RuleConfig
from watchdog.errors import JobRecordError
from watchdog.jobs import ACTIVE_STATUSES, INPUT_FIELDS, SUMMARY_FIELDS, FileInput, Job, parse_job
from watchdog.rules.evaluate import (
    CompiledRule,
    compile_rule,
    compile_rules,
    describe_rule,
    evaluate,
    fields_needed,
    needs_status_since,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def rule(when: dict[str, Any], match: dict[str, Any] | None = None, **extra: Any) -> CompiledRule:
    data: dict[str, Any] = {"name": extra.pop("name", "r"), "when": when, "action": "cancel"}
    if match is not None:
        data["match"] = match
    data.update(extra)
    return compile_rule(RuleConfig.model_validate(data))


def job(**fields: Any) -> Job:
    fields.setdefault("uuid", "job-1")
    fields.setdefault("status", "RUNNING")
    return Job(**fields)


def verdict(j: Job, r: CompiledRule, status_since: datetime | None = None) -> tuple[bool, str]:
    (v,) = evaluate(j, [r], NOW, status_since)
    return v.matched, v.reason


# --- time thresholds: just below, at, just above -------------------------------------------

THRESHOLD_CASES = [
    # (condition, job fields, expected match, expected reason)
    (
        {"runtime_over": "12h"},
        {"remote_started": NOW - timedelta(hours=12) + SECOND},
        False,
        "runtime 11h59m does not exceed 12h",
    ),
    (
        {"runtime_over": "12h"},
        {"remote_started": NOW - timedelta(hours=12)},
        False,
        "runtime 12h00m does not exceed 12h",
    ),
    (
        {"runtime_over": "12h"},
        {"remote_started": NOW - timedelta(hours=12) - SECOND},
        True,
        "runtime 12h00m01s exceeds 12h",
    ),
    (
        {"runtime_over": "12h"},
        {"remote_started": NOW - timedelta(hours=12, seconds=59)},
        True,
        "runtime 12h00m59s exceeds 12h",
    ),
    (
        {"runtime_over": "12h"},
        {"remote_started": NOW - timedelta(hours=12, milliseconds=250)},
        True,
        "runtime 12h00m00.25s exceeds 12h",
    ),
    (
        {"runtime_over": "12h"},
        {"remote_started": NOW - timedelta(hours=12, minutes=3)},
        True,
        "runtime 12h03m exceeds 12h",
    ),
    (
        {"runtime_over": "1m"},
        {"status": "QUEUED", "remote_started": None},
        False,
        "runtime 0s does not exceed 1m (not started)",
    ),
    ({"age_over": "2d"}, {"created": NOW - timedelta(days=2) + SECOND}, False, None),
    (
        {"age_over": "2d"},
        {"created": NOW - timedelta(days=2)},
        False,
        "age 2d00h does not exceed 2d",
    ),
    (
        {"age_over": "2d"},
        {"created": NOW - timedelta(days=2) - SECOND},
        True,
        "age 2d00h00m01s exceeds 2d",
    ),
    ({"age_over": "2d"}, {"created": None}, False, "age unknown (the job has no created time)"),
    (
        {"in_status_over": "6h"},
        {"status": "RUNNING", "remote_started": NOW - timedelta(hours=6) + SECOND},
        False,
        "in RUNNING for 5h59m, not over 6h",
    ),
    (
        {"in_status_over": "6h"},
        {"status": "RUNNING", "remote_started": NOW - timedelta(hours=6)},
        False,
        "in RUNNING for 6h00m, not over 6h",
    ),
    (
        {"in_status_over": "6h"},
        {"status": "RUNNING", "remote_started": NOW - timedelta(hours=6) - SECOND},
        True,
        "in RUNNING for 6h00m01s, over 6h",
    ),
    (
        {"in_status_over": "2d"},
        {"status": "QUEUED", "remote_submitted": NOW - timedelta(days=2, minutes=1)},
        True,
        "in QUEUED for 2d00h01m, over 2d",
    ),
    (
        {"in_status_over": "2d"},
        {"status": "QUEUED", "remote_submitted": NOW - timedelta(days=2)},
        False,
        None,
    ),
    (
        {"in_status_over": "6h"},
        {"status": "STAGING_INPUTS", "created": NOW - timedelta(days=1)},
        False,
        "time in STAGING_INPUTS unknown",
    ),
    (
        {"in_status_over": "6h"},
        {"status": "STAGING_INPUTS", "created": NOW - timedelta(hours=5)},
        False,
        "in STAGING_INPUTS for at most 5h00m (its age), not over 6h",
    ),
]


@pytest.mark.parametrize(("when", "fields", "expected", "reason"), THRESHOLD_CASES)
def test_time_conditions_at_their_thresholds(
    when: dict[str, Any], fields: dict[str, Any], expected: bool, reason: str | None
) -> None:
    matched, why = verdict(job(**fields), rule(when))
    assert matched is expected
    if reason is not None:
        assert why == reason


@pytest.mark.parametrize(
    ("since", "expected", "reason"),
    [
        (NOW - timedelta(hours=6) + SECOND, False, "in STAGING_INPUTS for 5h59m, not over 6h"),
        (NOW - timedelta(hours=6), False, "in STAGING_INPUTS for 6h00m, not over 6h"),
        (NOW - timedelta(hours=6, minutes=12), True, "in STAGING_INPUTS for 6h12m, over 6h"),
    ],
)
def test_in_status_uses_status_since(since: datetime, expected: bool, reason: str) -> None:
    j = job(status="STAGING_INPUTS", created=NOW - timedelta(days=3))
    assert verdict(j, rule({"in_status_over": "6h"}), since) == (expected, reason)


def test_status_since_overrides_remote_started() -> None:
    j = job(status="RUNNING", remote_started=NOW - timedelta(hours=10))
    matched, reason = verdict(j, rule({"in_status_over": "6h"}), NOW - timedelta(hours=1))
    assert not matched
    assert reason == "in RUNNING for 1h00m, not over 6h"


@pytest.mark.parametrize(
    ("runtime", "expected", "reason"),
    [
        (
            timedelta(hours=62, minutes=30) - SECOND,
            False,
            "node hours 500.0 do not exceed 500 (8 nodes x 62h29m)",
        ),
        (
            timedelta(hours=62, minutes=30),
            False,
            "node hours 500.0 do not exceed 500 (8 nodes x 62h30m)",
        ),
        (
            timedelta(hours=62, minutes=30) + SECOND,
            True,
            "node hours 500.0 exceed 500 (8 nodes x 62h30m)",
        ),
        (timedelta(hours=64), True, "node hours 512.0 exceed 500 (8 nodes x 64h00m)"),
    ],
)
def test_node_hours_at_the_threshold(runtime: timedelta, expected: bool, reason: str) -> None:
    j = job(node_count=8, remote_started=NOW - runtime)
    assert verdict(j, rule({"node_hours_over": 500})) == (expected, reason)


def test_node_hours_unknown_without_node_count_and_zero_before_start() -> None:
    r = rule({"node_hours_over": 1})
    assert verdict(job(remote_started=NOW - timedelta(days=9)), r) == (
        False,
        "node hours unknown (the job has no nodeCount)",
    )
    assert verdict(job(node_count=1, status="QUEUED"), r) == (
        False,
        "node hours 0.0 do not exceed 1 (1 node x 0h00m)",
    )


# --- input_matches ---------------------------------------------------------------------------

INPUT_JOB = job(
    name="sim-run",
    description="mesh study",
    file_inputs=(FileInput("mesh", "tapis://corral/x.tmp", "inputs/mesh.dat"),),
    app_args=("-n", "100"),
    container_args=("--bind", "/scratch/a"),
    scheduler_options=("-A", "DesignSafe-01"),
    env=(("_tapisJobUUID", "secret-ish"), ("MODE", "fast")),
)


@pytest.mark.parametrize(
    ("pattern", "sources", "expected", "reason"),
    [
        (r"\.tmp$", None, True, r'input file_inputs "tapis://corral/x.tmp" matches \.tmp$'),
        (r"mesh\.dat$", ["file_inputs"], True, None),
        (r"^100$", ["app_args"], True, r'input app_args "100" matches ^100$'),
        ("^/scratch/", ["container_args"], True, None),
        ("DesignSafe", ["scheduler_options"], True, None),
        ("^MODE=fast$", ["env"], True, 'input env "MODE=fast" matches ^MODE=fast$'),
        ("^_tapis", ["env"], False, "no input in env matches ^_tapis"),
        ("secret-ish", None, False, "no input matches secret-ish"),
        ("^sim-", ["name"], True, None),
        ("study", ["description"], True, None),
        (r"\.tmp$", ["app_args", "env"], False, r"no input in app_args, env matches \.tmp$"),
        ("^DesignSafe-01$", ["app_args"], False, None),
    ],
)
def test_input_matches_each_kind(
    pattern: str, sources: list[str] | None, expected: bool, reason: str | None
) -> None:
    condition: Any = pattern if sources is None else {"pattern": pattern, "in": sources}
    matched, why = verdict(INPUT_JOB, rule({"input_matches": condition}))
    assert matched is expected
    if reason is not None:
        assert why == reason


def test_input_matches_is_unknown_when_the_record_lacks_the_inputs() -> None:
    narrow = parse_job({"uuid": "u", "status": "RUNNING", "name": "plain"})
    matched, reason = verdict(narrow, rule({"input_matches": r"\.tmp$"}))
    assert not matched
    assert "file_inputs" in reason
    assert "not in the job record" in reason
    # ... and a `not` over an unknown stays unknown: no action on data we did not see.
    assert not verdict(narrow, rule({"not": {"input_matches": r"\.tmp$"}}))[0]


def test_input_matches_survives_unencodable_text() -> None:
    j = job(name="bad\ud800name.tmp")
    assert verdict(j, rule({"input_matches": r"\.tmp$"}))[0]


# --- selectors -------------------------------------------------------------------------------

SELECTOR_JOB = job(
    app_id="opensees-mp",
    exec_system_id="frontera",
    owner="alice",
    name="bridge-42",
    queue="normal",
    status="RUNNING",
    tags=("overnight", "bridge"),
    remote_started=NOW - timedelta(hours=13),
)


@pytest.mark.parametrize(
    ("match", "expected", "reason"),
    [
        ({"app": ["opensees*", "adcirc"]}, True, None),
        ({"app": ["namd*", "adcirc"]}, False, "app opensees-mp does not match namd*, adcirc"),
        ({"app": "OpenSees*"}, False, None),
        ({"exec_system": "frontera"}, True, None),
        ({"exec_system": "stampede?"}, False, "exec system frontera does not match stampede?"),
        ({"owner": "ali*"}, True, None),
        ({"owner": ["bob", "carol"]}, False, "owner alice does not match bob, carol"),
        ({"name": "bridge-[0-9]*"}, True, None),
        ({"name": "beam-*"}, False, None),
        ({"queue": "normal"}, True, None),
        ({"queue": "development"}, False, "queue normal does not match development"),
        ({"status": "RUNNING"}, True, None),
        ({"status": ["QUEUED", "BLOCKED"]}, False, "status RUNNING is not one of QUEUED, BLOCKED"),
        ({"tags_any": ["overnight"]}, True, None),
        ({"tags_any": ["urgent", "x"]}, False, "tags overnight, bridge include none of urgent, x"),
        ({"app": "opensees*", "exec_system": "frontera", "status": "RUNNING"}, True, None),
        (
            {"app": "opensees*", "exec_system": "ls6"},
            False,
            "exec system frontera does not match ls6",
        ),
    ],
)
def test_selectors(match: dict[str, Any], expected: bool, reason: str | None) -> None:
    matched, why = verdict(SELECTOR_JOB, rule({"runtime_over": "12h"}, match))
    assert matched is expected
    if reason is not None:
        assert why == reason


def test_empty_queue_reads_as_none() -> None:
    matched, why = verdict(job(queue=""), rule({"runtime_over": "1s"}, {"queue": "normal"}))
    assert not matched
    assert why == "queue (none) does not match normal"


# --- any / not, verdict fields, details ------------------------------------------------------


def test_any_and_not() -> None:
    long_run = job(
        remote_started=NOW - timedelta(hours=20),
        created=NOW - timedelta(hours=21),
        name="keep-me",
        node_count=1,
    )
    either = rule({"any": [{"runtime_over": "30h"}, {"node_hours_over": 10}]})
    assert verdict(long_run, either) == (True, "node hours 20.0 exceed 10 (1 node x 20h00m)")
    neither = rule({"any": [{"runtime_over": "30h"}, {"age_over": "1d"}]})
    matched, reason = verdict(long_run, neither)
    assert not matched
    assert reason == "none of: runtime 20h00m does not exceed 1d6h; age 21h00m does not exceed 1d"
    unknown = job(remote_started=NOW - timedelta(hours=20))
    assert verdict(unknown, neither) == (False, "age unknown (the job has no created time)")
    excluded = rule(
        {"runtime_over": "1h", "not": {"input_matches": {"pattern": "^keep", "in": ["name"]}}}
    )
    assert verdict(long_run, excluded) == (
        False,
        'input name "keep-me" matches ^keep (excluded by not)',
    )
    included = rule(
        {"runtime_over": "1h", "not": {"input_matches": {"pattern": "^drop", "in": ["name"]}}}
    )
    assert verdict(long_run, included)[0]


def test_verdict_fields_and_details() -> None:
    r = rule(
        {"runtime_over": "12h", "age_over": "1d"},
        {"app": "opensees*"},
        name="frontera-12h",
        grace="10m",
        dry_run=True,
    )
    (v,) = evaluate(SELECTOR_JOB, [r], NOW)
    assert v.rule == "frontera-12h"
    assert v.action == "cancel"
    assert v.grace == timedelta(minutes=10)
    assert v.dry_run is True
    assert not v.matched
    assert v.details == (
        "yes match.app: app opensees-mp matches opensees*",
        "yes when.runtime_over: runtime 13h00m exceeds 12h",
        "?   when.age_over: age unknown (the job has no created time)",
    )


def test_one_verdict_per_rule_in_file_order() -> None:
    rules = [rule({"runtime_over": f"{h}h"}, name=f"r{h}") for h in (20, 1, 5)]
    verdicts = evaluate(SELECTOR_JOB, rules, NOW)
    assert [(v.rule, v.matched) for v in verdicts] == [("r20", False), ("r1", True), ("r5", True)]


def test_naive_now_is_taken_as_utc() -> None:
    r = rule({"runtime_over": "12h"})
    assert evaluate(SELECTOR_JOB, [r], NOW.replace(tzinfo=None))[0].matched


# --- fields_needed, needs_status_since, describe_rule ----------------------------------------


def test_fields_needed_adds_inputs_only_when_used() -> None:
    assert fields_needed([rule({"runtime_over": "1h"})]) == SUMMARY_FIELDS
    names = fields_needed([rule({"any": [{"input_matches": {"pattern": "x", "in": ["env"]}}]})])
    assert names == (*SUMMARY_FIELDS, "parameterSet")
    everything = fields_needed([rule({"input_matches": "x"})])
    assert set(everything) == set(SUMMARY_FIELDS) | set(INPUT_FIELDS)


@pytest.mark.parametrize(
    ("fields", "match", "expected"),
    [
        ({"status": "STAGING_JOB", "created": NOW - timedelta(hours=7)}, None, True),
        ({"status": "STAGING_JOB", "created": NOW - timedelta(hours=6)}, None, False),
        ({"status": "STAGING_JOB", "created": None}, None, True),
        ({"status": "RUNNING", "created": NOW - timedelta(days=9)}, None, False),
        ({"status": "QUEUED", "created": NOW - timedelta(days=9)}, None, False),
        ({"status": "STAGING_JOB", "created": NOW - timedelta(days=9)}, {"app": "other"}, False),
        (
            {"status": "STAGING_JOB", "created": NOW - timedelta(days=9)},
            {"status": "BLOCKED"},
            False,
        ),
    ],
)
def test_needs_status_since(
    fields: dict[str, Any], match: dict[str, Any] | None, expected: bool
) -> None:
    rules = [
        rule({"runtime_over": "1h"}, name="a"),
        rule({"in_status_over": "6h"}, match, name="b"),
    ]
    assert needs_status_since(job(**fields), rules, NOW) is expected


def test_needs_status_since_looks_inside_not_and_any() -> None:
    nested = rule({"any": [{"not": {"in_status_over": "1h"}}, {"age_over": "9d"}]})
    old = job(status="BLOCKED", created=NOW - timedelta(hours=2))
    assert needs_status_since(old, [nested], NOW)
    assert not needs_status_since(old, [rule({"age_over": "1h"})], NOW)


def test_describe_rule() -> None:
    r = rule(
        {"runtime_over": "12h"},
        {"app": ["opensees*", "adcirc"], "exec_system": "frontera", "status": "RUNNING"},
        name="frontera-12h",
    )
    assert describe_rule(r) == (
        "frontera-12h: cancel RUNNING jobs of app opensees*|adcirc on frontera when runtime > 12h"
    )
    other = rule(
        {"in_status_over": "2d", "any": [{"age_over": "1h30m"}, {"not": {"node_hours_over": 5}}]},
        {"queue": "normal", "tags_any": ["a", "b"]},
        name="q",
        action="warn",
        grace="1h",
        dry_run=True,
    )
    assert describe_rule(other) == (
        "q: warn (dry run) jobs in queue normal tagged a|b when time in status > 2d and "
        "(age > 1h30m or not (node hours > 5)), after a 1h grace"
    )


def test_compile_rules_keeps_order() -> None:
    configs = [
        RuleConfig.model_validate({"name": n, "when": {"age_over": "1h"}, "action": "warn"})
        for n in "cab"
    ]
    assert [r.name for r in compile_rules(configs)] == ["c", "a", "b"]


# --- properties ------------------------------------------------------------------------------

durations = st.integers(min_value=60, max_value=30 * 86400).map(lambda s: timedelta(seconds=s))


@st.composite
def rule_sets(draw: st.DrawFn) -> tuple[list[CompiledRule], timedelta]:
    """Rules whose every time threshold is at least `floor`, and that floor."""
    floor = draw(durations)
    count = draw(st.integers(min_value=1, max_value=4))
    rules = []
    for index in range(count):
        kinds = draw(
            st.sets(st.sampled_from(["runtime", "age", "in_status", "node_hours"]), min_size=1)
        )
        when: dict[str, Any] = {
            f"{kind}_over": f"{int((floor + draw(durations)).total_seconds())}s"
            for kind in sorted(kinds - {"node_hours"})
        }
        if "node_hours" in kinds:
            when["node_hours_over"] = floor.total_seconds() / 3600 * 64
        rules.append(rule(when, name=f"r{index}"))
    return rules, floor


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sets=rule_sets(),
    status=st.sampled_from(ACTIVE_STATUSES),
    nodes=st.integers(min_value=1, max_value=64),
    fraction=st.floats(min_value=0, max_value=1),
)
def test_a_job_below_every_threshold_never_matches(
    sets: tuple[list[CompiledRule], timedelta], status: str, nodes: int, fraction: float
) -> None:
    rules, floor = sets
    younger = floor * fraction
    j = job(
        status=status,
        created=NOW - younger,
        remote_submitted=NOW - younger,
        remote_started=NOW - younger,
        node_count=nodes,
    )
    assert not any(v.matched for v in evaluate(j, rules, NOW, NOW - younger))


job_strategy = st.builds(
    Job,
    uuid=st.text(min_size=1, max_size=8),
    status=st.sampled_from(ACTIVE_STATUSES),
    app_id=st.sampled_from(["opensees-mp", "adcirc", "namd", ""]),
    tags=st.lists(st.sampled_from(["overnight", "x"]), max_size=2).map(tuple),
    created=st.none() | st.datetimes(timezones=st.just(UTC)),
    remote_started=st.none() | st.datetimes(timezones=st.just(UTC)),
    remote_submitted=st.none() | st.datetimes(),
    node_count=st.none() | st.integers(min_value=0, max_value=10_000),
    name=st.text(max_size=20),
    app_args=st.lists(st.text(max_size=10), max_size=3).map(tuple),
)
some_rules = st.lists(
    st.sampled_from(
        [
            rule({"runtime_over": "1h"}, name="a"),
            rule({"age_over": "1d"}, {"app": "opensees*"}, name="b"),
            rule({"node_hours_over": 3}, name="c"),
            rule({"input_matches": "x"}, name="d"),
            rule({"not": {"in_status_over": "2h"}}, {"tags_any": ["overnight"]}, name="e"),
            rule({"any": [{"runtime_over": "5m"}, {"input_matches": "^a"}]}, name="f"),
        ]
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(j=job_strategy, rules=some_rules, extra=some_rules, now=st.datetimes(timezones=st.just(UTC)))
def test_adding_rules_never_removes_another_rules_match(
    j: Job, rules: list[CompiledRule], extra: list[CompiledRule], now: datetime
) -> None:
    before = evaluate(j, rules, now)
    after = evaluate(j, [*rules, *extra], now)
    assert after[: len(before)] == before


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=30)
timestamps = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
record_values = st.recursive(
    json_scalars | timestamps,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
texts = st.none() | st.text(max_size=20)
counts = st.none() | st.integers(min_value=0, max_value=100_000)
args = st.lists(
    st.fixed_dictionaries({"arg": texts}, optional={"include": st.booleans()}), max_size=3
)
parameter_sets = st.fixed_dictionaries(
    {},
    optional={
        "appArgs": args,
        "containerArgs": args,
        "schedulerOptions": args,
        "envVariables": st.lists(
            st.fixed_dictionaries({"key": st.text(max_size=8), "value": texts})
        ),
    },
)
file_inputs = st.lists(st.fixed_dictionaries({"sourceUrl": texts, "targetPath": texts}), max_size=3)
WELL_TYPED = {
    "name": texts,
    "owner": texts,
    "appId": texts,
    "execSystemId": texts,
    "execSystemLogicalQueue": texts,
    "description": texts,
    "nodeCount": counts,
    "coresPerNode": counts,
    "maxMinutes": counts,
    "tags": st.lists(st.text(max_size=5), max_size=3),
    "created": st.none() | timestamps,
    "remoteSubmitted": st.none() | timestamps,
    "remoteStarted": st.none() | timestamps,
    "ended": st.none() | timestamps,
    "lastUpdated": st.none() | timestamps,
    "fileInputs": file_inputs | file_inputs.map(json.dumps),
    "parameterSet": parameter_sets | parameter_sets.map(json.dumps),
    "notes": st.just("{}"),
}
# Well-typed records, so that most parse and reach evaluate, with at most one field arbitrary.
records = st.tuples(
    st.fixed_dictionaries({}, optional=WELL_TYPED),
    st.dictionaries(st.sampled_from(sorted(WELL_TYPED)), record_values, max_size=1),
).map(lambda parts: {**parts[0], **parts[1]})


@settings(max_examples=200, deadline=None)
@given(
    record=records,
    uuid=st.text(min_size=1, max_size=5),
    status=st.sampled_from(ACTIVE_STATUSES),
    now=st.datetimes(timezones=st.just(UTC)),
)
def test_evaluate_never_raises_on_a_parsed_job(
    record: dict[str, Any], uuid: str, status: str, now: datetime
) -> None:
    try:
        j = parse_job({**record, "uuid": uuid, "status": status})
    except JobRecordError:
        return
    rules = [
        rule({"runtime_over": "1h", "node_hours_over": 2}, {"app": "*"}, name="a"),
        rule({"input_matches": "."}, {"tags_any": ["t"]}, name="b"),
        rule({"any": [{"in_status_over": "1m"}, {"not": {"age_over": "1d"}}]}, name="c"),
    ]
    verdicts = evaluate(j, rules, now)
    assert [v.rule for v in verdicts] == ["a", "b", "c"]
    assert all(not v.reason.startswith("cannot evaluate") for v in verdicts)
