"""The decision a poll takes for every (job, rule) is the `matched` of the full verdict.

`decide_rule` and `evaluate_matches` skip the sentences; these properties check, on many generated
jobs and rules, that they answer exactly what the explained evaluation answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.config.rule_schema import RuleConfig
from watchdog.jobs import ACTIVE_STATUSES, FileInput, Job
from watchdog.rules.conditions import Facts
from watchdog.rules.evaluate import (
    CompiledRule,
    compile_rule,
    decide_rule,
    evaluate,
    evaluate_matches,
)

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
seconds = st.integers(min_value=1, max_value=5 * 86400)
moments = st.none() | seconds.map(lambda s: NOW - timedelta(seconds=s))
texts = st.sampled_from(["", "run", "/scratch/a", "in.tmp", "ALLOCATION_OVERRIDE=yes", "é"])

leaves = st.one_of(
    seconds.map(lambda s: {"runtime_over": f"{s}s"}),
    seconds.map(lambda s: {"age_over": f"{s}s"}),
    seconds.map(lambda s: {"in_status_over": f"{s}s"}),
    st.floats(min_value=0.001, max_value=500).map(lambda n: {"node_hours_over": n}),
    st.sampled_from(
        [
            {"input_matches": r"(^|/)scratch/|\.tmp$"},
            {"input_matches": {"pattern": "^ALLOCATION_OVERRIDE=yes$", "in": ["env"]}},
            {"input_matches": {"pattern": "run", "in": ["name", "app_args"]}},
        ]
    ),
)


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


condition_maps = st.recursive(
    st.lists(leaves, min_size=1, max_size=3).map(_merge),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda options: {"any": options}),
        inner.map(lambda negated: {"not": negated}),
        st.tuples(leaves, inner).map(lambda pair: {**pair[0], "not": pair[1]}),
    ),
    max_leaves=6,
)
selectors = st.fixed_dictionaries(
    {},
    optional={
        "app": st.lists(st.sampled_from(["opensees*", "adcirc", "na?d", "[ab]*"]), min_size=1),
        "status": st.lists(st.sampled_from(ACTIVE_STATUSES), min_size=1, unique=True),
        "tags_any": st.lists(st.sampled_from(["overnight", "sweep"]), min_size=1),
        "queue": st.sampled_from(["normal", "*"]),
    },
)


@st.composite
def compiled_rules(draw: st.DrawFn) -> list[CompiledRule]:
    count = draw(st.integers(min_value=1, max_value=4))
    rules = []
    for index in range(count):
        data = {
            "name": f"r{index}",
            "when": draw(condition_maps),
            "match": draw(selectors),
            "action": draw(st.sampled_from(["cancel", "warn"])),
        }
        rules.append(compile_rule(RuleConfig.model_validate(data)))
    return rules


jobs = st.builds(
    Job,
    uuid=st.just("job-1"),
    status=st.sampled_from(ACTIVE_STATUSES),
    app_id=st.sampled_from(["opensees-mp", "adcirc", "namd", "bash", ""]),
    queue=st.sampled_from(["normal", "", "large"]),
    tags=st.lists(st.sampled_from(["overnight", "sweep", "x"]), max_size=2).map(tuple),
    created=moments,
    remote_started=moments,
    remote_submitted=moments,
    node_count=st.none() | st.integers(min_value=0, max_value=64),
    name=texts,
    app_args=st.lists(texts, max_size=2).map(tuple),
    env=st.lists(st.tuples(st.sampled_from(["ALLOCATION_OVERRIDE", "_tapisX"]), texts)).map(tuple),
    file_inputs=st.lists(st.builds(FileInput, source_url=texts, target_path=texts)).map(tuple),
    fields=st.sampled_from(
        [frozenset(), frozenset({"name"}), frozenset({"name", "fileInputs", "parameterSet"})]
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job=jobs, rules=compiled_rules(), since=moments)
def test_the_decision_is_the_explained_verdict(
    job: Job, rules: list[CompiledRule], since: datetime | None
) -> None:
    verdicts = evaluate(job, rules, NOW, since)
    facts = Facts(job, NOW, since)
    for rule, verdict in zip(rules, verdicts, strict=True):
        decided = decide_rule(job, rule, NOW, since)
        # The explanation's own answer, from its sentences' path: selectors checked one by one,
        # the conditions combined outcome by outcome.
        explained = (
            all(selector.check(job)[0] for selector in rule.selectors)
            and rule.when.evaluate(facts, "when").holds is True
        )
        assert decided == verdict.matched == explained
        assert not verdict.reason.startswith(("cannot evaluate", "cannot explain"))
    matched = [v for v in verdicts if v.matched]
    assert evaluate_matches(job, rules, NOW, since) == matched
