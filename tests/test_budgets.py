"""Budgets across jobs: the configuration, usage over a window, what goes over a limit. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.config.budget_schema import BudgetConfig
from watchdog.config.model import load_offline_config
from watchdog.errors import ConfigError
from watchdog.jobs import Job
from watchdog.rules.budgets import (
    Run,
    assess,
    budget_verdicts,
    compile_budgets,
    describe_budget,
    figure,
    usage,
)

if TYPE_CHECKING:
    from pathlib import Path

NOW = datetime(2026, 10, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def budget(**fields: Any) -> Any:
    data: dict[str, Any] = {
        "name": "sweep-daily",
        "match": {"app": "opensees*", "tags_any": ["sweep"]},
        "window": "24h",
        "limit": {"node_hours": 100},
        "action": "cancel",
    }
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    return compile_budgets([BudgetConfig.model_validate(data)])[0]


def job(uuid: str, status: str = "QUEUED", **fields: Any) -> Job:
    fields.setdefault("app_id", "opensees-mp")
    fields.setdefault("tags", ("sweep",))
    fields.setdefault("node_count", 4)
    fields.setdefault("created", NOW - 10 * HOUR)
    return Job(uuid=uuid, status=status, **fields)


def running(uuid: str, hours_ago: float, **fields: Any) -> Job:
    return job(uuid, "RUNNING", remote_started=NOW - hours_ago * HOUR, **fields)


def ended(uuid: str, start_ago: float, end_ago: float, nodes: int = 4, **fields: Any) -> Run:
    started = NOW - start_ago * HOUR
    record = job(uuid, "FINISHED", remote_started=started, node_count=nodes, **fields)
    return Run(record, NOW - end_ago * HOUR)


# -- configuration -----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "tapis": {
        "base_url": "https://tapis.example.org",
        "tenant_id": "t",
        "username": "u",
        "password": "p",
    },
    "rules": [{"name": "long", "when": {"runtime_over": "12h"}, "action": "cancel"}],
}


def load(tmp_path: Path, extra: dict[str, Any]) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**BASE, **extra}))
    return load_offline_config(path, env={})


def errors(tmp_path: Path, extra: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, extra)
    return list(caught.value.problems)


OK = {"name": "b", "window": "24h", "limit": {"node_hours": 10}, "action": "cancel"}


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ({**OK, "limit": {}}, "budgets[0] (b).limit: give exactly one of node_hours"),
        (
            {**OK, "limit": {"node_hours": 1, "su": 2}},
            "limit: give exactly one of node_hours, su, running_jobs, active_jobs (got node_hours,",
        ),
        ({**OK, "limit": {"node_hours": -3}}, "budgets[0] (b).limit.node_hours: must be"),
        ({**OK, "window": "soon"}, 'budgets[0] (b).window: expected a duration like "90m"'),
        ({**OK, "window": None}, "a node_hours or su limit needs a window or a since"),
        ({**OK, "since": "2026-10-01T00:00:00Z"}, "needs a window or a since, not both"),
        (
            {**OK, "window": None, "since": "2026-10-01"},
            'budgets[0] (b).since: expected a UTC time like "2026-10-01T00:00:00Z", got',
        ),
        (
            {"name": "c", "limit": {"running_jobs": 3}, "window": "1h", "action": "cancel"},
            "budgets[0] (c).window: running_jobs is counted at each poll: it takes no window",
        ),
        (
            {"name": "c", "limit": {"active_jobs": 3}, "include_running": True, "action": "warn"},
            "budgets[0] (c).include_running: applies to node_hours and su limits",
        ),
        ({**OK, "warn_at": "120%"}, "budgets[0] (b).warn_at: expected a share below the limit"),
        (
            {**OK, "action": "kill"},
            'budgets[0] (b).action: expected "cancel" or "warn", got "kill"',
        ),
        ({**OK, "match": {"status": "RUNNING"}}, "budgets[0] (b).match.status: a budget counts"),
        ({**OK, "match": {"ap": "x"}}, "budgets[0] (b).match.ap: unknown key"),
        ({**OK, "colour": "red"}, "budgets[0] (b).colour: unknown key"),
        ({**OK, "name": "long"}, 'budgets[0] (long).name: "long" is also the name of rules[0]'),
        ({**OK, "limit": {"su": 5}}, "budgets[0] (b).limit.su: an su limit needs charge_rates"),
    ],
)
def test_a_bad_budget_names_its_key_path(
    tmp_path: Path, written: dict[str, Any], expected: str
) -> None:
    written = {k: v for k, v in written.items() if v is not None}
    found = errors(tmp_path, {"budgets": [written]})
    assert any(expected in line for line in found), found


def test_two_budgets_of_one_name_are_refused(tmp_path: Path) -> None:
    found = errors(tmp_path, {"budgets": [OK, {**OK, "window": "1h"}]})
    assert any(
        'budgets[1] (b).name: duplicate budget name "b" (also budgets[0])' in f for f in found
    )


def test_bad_charge_rates_name_system_and_queue(tmp_path: Path) -> None:
    found = errors(tmp_path, {"charge_rates": {"frontera": {"normal": "cheap"}, "ls6": 3}})
    assert any(
        'charge_rates.frontera.normal: expected a number >= 0, got "cheap"' in f for f in found
    )
    assert any("charge_rates.ls6: expected a mapping of queue to rate, got 3" in f for f in found)


def test_a_valid_budget_section_loads_frozen(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "budgets": [
                {**OK, "warn_at": "80%", "include_running": True},
                {
                    "name": "since",
                    "since": "2026-10-01T00:00:00Z",
                    "limit": {"su": 5},
                    "action": "warn",
                },
                {"name": "lanes", "limit": {"running_jobs": 20}, "action": "cancel"},
            ],
            "charge_rates": {"stampede3": {"skx": 1.0, "spr*": 2}},
        },
    )
    first, since, lanes = config.budgets
    assert first.warn_at == pytest.approx(0.8)
    assert since.since == datetime(2026, 10, 1, tzinfo=UTC)
    assert lanes.limit.kind == "running_jobs"
    assert config.charge_rates.rate("stampede3", "spr-large") == 2.0
    assert config.charge_rates.rate("stampede3", "normal") is None
    assert config.charge_rates.rate("frontera", "skx") is None
    with pytest.raises(ValueError, match="frozen"):
        first.name = "other"  # type: ignore[misc]


def test_check_summarises_budgets() -> None:
    summary = describe_budget(budget(warn_at="80%"))
    assert summary == (
        "sweep-daily: cancel not-started jobs of app opensees* tagged sweep over 100 node hours "
        "in the last 1d, warn at 80%"
    )
    lanes = budget(window=None, limit={"active_jobs": 5}, match={"owner": "lab"})
    assert (
        describe_budget(lanes)
        == "sweep-daily: cancel the newest jobs owned by lab over 5 active jobs"
    )


# -- usage -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], 0.0),
        ([Run(running("a", 2))], 8.0),  # 4 nodes x 2 h
        ([Run(running("a", 30))], 96.0),  # only the 24 h inside the window
        ([ended("e", 5, 3)], 8.0),  # ended inside the window
        ([ended("e", 30, 25)], 0.0),  # ended before the window
        ([ended("e", 26, 22)], 8.0),  # straddles the window's start: 2 h inside
        ([Run(job("q"))], 0.0),  # queued: nothing used
        ([Run(running("a", 2, node_count=None))], 0.0),  # unknown node count: nothing known
        ([Run(running("x", 2, app_id="namd"))], 0.0),  # another group
        ([Run(running("a", 2)), ended("a", 3, 1)], 8.0),  # seen both ways: counted once, ended
    ],
)
def test_usage_is_node_count_times_overlap_with_the_window(
    runs: list[Run], expected: float
) -> None:
    assert usage(budget(), runs, NOW)[0] == pytest.approx(expected)


def test_su_weighs_node_hours_by_the_queue_rate(tmp_path: Path) -> None:
    rates = load(tmp_path, {"charge_rates": {"s3": {"skx": 1.0, "spr": 2.5}}}).charge_rates
    su = budget(limit={"su": 50})
    runs = [
        Run(running("a", 2, exec_system_id="s3", queue="skx")),  # 8 SU
        Run(running("b", 2, exec_system_id="s3", queue="spr")),  # 20 SU
        Run(running("c", 2, exec_system_id="other", queue="skx")),  # no rate
    ]
    assert usage(su, runs, NOW, rates) == (pytest.approx(28.0), 1)


def test_since_window_counts_from_its_start() -> None:
    fixed = budget(window=None, since="2026-10-02T10:00:00Z")
    assert usage(fixed, [Run(running("a", 5))], NOW)[0] == pytest.approx(8.0)


# -- over a limit ------------------------------------------------------------------------------


def test_over_a_node_hour_limit_every_queued_job_of_the_group_is_chosen() -> None:
    jobs = [
        running("r1", 10),  # 40 node hours
        job("q-old", created=NOW - 5 * HOUR),
        job("q-new", created=NOW - HOUR),
        job("q-other", app_id="namd"),
        job("staging", "STAGING_INPUTS"),
    ]
    status = assess(budget(), jobs, [ended("e", 20, 5)], NOW)  # 40 + 60 = 100 of 100
    assert status.level == "over"
    assert [j.uuid for j in status.over] == ["q-new", "q-old", "staging"]
    assert status.reason == "sweep-daily: 100 of 100 node hours in the last 1d"


def test_include_running_chooses_running_jobs_after_queued_ones() -> None:
    jobs = [running("r1", 30, node_count=8), job("q1")]
    status = assess(budget(include_running=True), jobs, [], NOW)
    assert [j.uuid for j in status.over] == ["q1", "r1"]


def test_under_the_limit_nothing_is_chosen_and_warn_at_warns() -> None:
    jobs = [running("r1", 21), job("q1")]  # 84 of 100
    assert assess(budget(), jobs, [], NOW).level == "ok"
    warned = assess(budget(warn_at="80%"), jobs, [], NOW)
    assert (warned.level, warned.over) == ("warn", ())


def test_a_count_limit_chooses_the_newest_excess_not_running_first() -> None:
    lanes = budget(window=None, limit={"active_jobs": 3})
    jobs = [
        running("r-oldest", 1, created=NOW - 9 * HOUR),
        job("q-old", created=NOW - 8 * HOUR),
        running("r-mid", 1, created=NOW - 7 * HOUR),
        running("r-new", 1, created=NOW - 2 * HOUR),
        job("q-mid", created=NOW - 6 * HOUR),
        job("q-newest", created=NOW - HOUR),
        job("other", app_id="namd", created=NOW - HOUR),
    ]
    status = assess(lanes, jobs, [], NOW)
    assert status.reason == "sweep-daily: 6 of 3 active jobs"
    # The oldest three keep their place: r-oldest (9h), q-old (8h), r-mid (7h).
    assert [j.uuid for j in status.over] == ["q-newest", "q-mid", "r-new"]


def test_a_running_jobs_limit_counts_and_cancels_running_jobs_only() -> None:
    lanes = budget(window=None, limit={"running_jobs": 1})
    jobs = [
        running("r1", 3, created=NOW - 5 * HOUR),
        running("r2", 2, created=NOW - 4 * HOUR),
        job("q1", created=NOW - HOUR),
    ]
    status = assess(lanes, jobs, [], NOW)
    assert (status.usage, [j.uuid for j in status.over]) == (2.0, ["r2"])


def test_verdicts_name_the_budget_and_carry_its_action() -> None:
    status = assess(budget(grace="10m"), [running("r", 30, node_count=8), job("q")], [], NOW)
    verdicts = budget_verdicts([status])
    (verdict,) = verdicts["q"]
    assert (verdict.rule, verdict.action, verdict.grace) == (
        "sweep-daily",
        "cancel",
        10 * 60 * timedelta(seconds=1),
    )
    assert verdict.reason == "sweep-daily: 192 of 100 node hours in the last 1d"


@pytest.mark.parametrize(
    ("value", "text"), [(2013.4, "2,013"), (12.5, "12.5"), (3.0, "3"), (0.04, "0.0")]
)
def test_figures_read_like_a_person_writes_them(value: float, text: str) -> None:
    assert figure(value) == text


# -- properties --------------------------------------------------------------------------------

offsets = st.floats(min_value=0, max_value=100, allow_nan=False)
runs_strategy = st.lists(
    st.tuples(offsets, st.one_of(st.none(), offsets), st.integers(min_value=0, max_value=64)).map(
        lambda t: Run(
            job("x", "RUNNING", remote_started=NOW - t[0] * HOUR, node_count=t[2]),
            None if t[1] is None else NOW - min(t[0], t[1]) * HOUR,
        )
    ),
    max_size=8,
).map(
    lambda runs: [
        Run(Job(**{**_fields(r.job), "uuid": f"j{i}"}), r.ended) for i, r in enumerate(runs)
    ]
)


def _fields(record: Job) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


@settings(max_examples=60, deadline=None)
@given(
    runs_strategy, st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=200)
)
def test_usage_never_decreases_while_the_window_only_grows(
    runs: list[Run], hours: int, more: int
) -> None:
    narrow = usage(budget(window=f"{hours}h"), runs, NOW)[0]
    wide = usage(budget(window=f"{hours + more}h"), runs, NOW)[0]
    fixed = budget(window=None, since="2026-09-28T00:00:00Z")
    earlier = usage(fixed, runs, NOW - more * HOUR / 10)[0]
    assert wide >= narrow - 1e-9
    assert usage(fixed, runs, NOW)[0] >= earlier - 1e-9


@settings(max_examples=60, deadline=None)
@given(runs_strategy, runs_strategy)
def test_adding_a_job_never_lowers_usage(runs: list[Run], extra: list[Run]) -> None:
    added = [Run(Job(**{**_fields(r.job), "uuid": f"new-{r.job.uuid}"}), r.ended) for r in extra]
    before = usage(budget(), runs, NOW)[0]
    assert usage(budget(), [*runs, *added], NOW)[0] >= before - 1e-9


def test_check_prints_each_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from watchdog.cli import main  # noqa: PLC0415 - the command as a person runs it

    path = tmp_path / "config.yaml"
    lanes = {"name": "lanes", "limit": {"running_jobs": 4}, "action": "cancel"}
    path.write_text(yaml.safe_dump({**BASE, "budgets": [OK, lanes]}))
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "  budgets (2):\n" in out
    assert "    b: cancel not-started jobs over 10 node hours in the last 1d\n" in out
    assert "    lanes: cancel the newest jobs over 4 running jobs\n" in out


def test_a_fleet_case_expects_a_budgets_cancels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from watchdog.cli import main  # noqa: PLC0415 - the command as a person runs it

    config = tmp_path / "config.yaml"
    sweep = {**OK, "name": "sweep", "match": {"app": "opensees*"}, "limit": {"node_hours": 100}}
    config.write_text(yaml.safe_dump({**BASE, "budgets": [sweep]}))
    fleet = [
        {"name": "big", "appId": "opensees", "status": "RUNNING", "remoteStarted": "-3h",
         "nodeCount": 10},
        {"name": "waiting", "appId": "opensees", "status": "QUEUED"},
        {"name": "other", "appId": "namd", "status": "QUEUED"},
    ]  # fmt: skip
    done = {"name": "done", "appId": "opensees", "status": "FINISHED", "remoteStarted": "-20h",
            "remoteEnded": "-12h", "nodeCount": 10}  # fmt: skip
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        yaml.safe_dump(
            {
                "cases": [
                    {"name": "over", "fleet": fleet, "ended": [done],
                     "expect_cancels": {"waiting": "sweep"}},
                    {"name": "under without the ended job", "fleet": fleet, "expect_cancels": {}},
                    {"name": "wrong", "fleet": fleet, "expect_cancels": {}, "ended": [done]},
                ]
            }
        )
    )  # fmt: skip
    assert main(["test-rules", "-c", str(config), str(cases)]) == 1
    out = capsys.readouterr().out
    assert "ok    over\n" in out
    assert "ok    under without the ended job\n" in out
    assert (
        "FAIL  wrong\n      expected cancels: none\n      got cancels:      waiting by sweep" in out
    )
