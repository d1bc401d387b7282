"""`tapis-watchdog test-rules`: prove what rules do before they touch a real job.

A case file (YAML) holds jobs as partial Tapis records, a clock, and the verdict each job
should get.
Every case goes through the daemon's own code path (`jobs.parse_job` → `rules.evaluate` →
`rules.plan.plan`), so a passing case is what the daemon will do. Format::

    now: "2026-11-28T03:00:00Z"     # optional clock for every case (default: the current time)
    cases:
      - name: runaway OpenSees job on Frontera
        now: "..."                  # optional, overrides the file's clock for this case
        job:                        # partial job record; times may be relative to now: "-13h"
          appId: opensees-mp-s3
          execSystemId: frontera
          status: RUNNING
          remoteStarted: "-13h"
        status_since: "-2h"         # optional: when the job entered its current status
        first_match:                # optional: when a rule first matched (grace periods)
          queue-wait: "-30m"
        expect: cancel              # cancel | warn | none
        rule: frontera-12h          # which rule (required for cancel and warn)
      - name: the sweep over its node-hour budget
        fleet:                      # a whole poll: partial records, each with a unique name
          - {name: big, appId: opensees-mp, status: RUNNING, remoteStarted: "-12h", nodeCount: 10}
          - {name: waiting, appId: opensees-mp, status: QUEUED}
        ended:                      # optional: jobs that ended, with remoteEnded
          - {name: done, appId: opensees-mp, status: FINISHED, remoteStarted: "-20h",
             remoteEnded: "-12h", nodeCount: 10}
        expect_cancels:             # job name -> the rule or budget that cancels it ({}: none)
          waiting: sweep-daily

A fleet case is planned as one poll of the daemon (`rules.poll_plan.plan_poll`, with every rule,
budget, exemption and the circuit breaker), with nothing in the state store but its ended jobs.

Exit codes: 0 every case passes, 1 a case fails, 2 the case file or configuration is invalid.
"""

from __future__ import annotations

import sys
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from watchdog.config.model import OfflineConfig, load_offline_config
from watchdog.durations import parse_relative
from watchdog.errors import InputError, JobRecordError, UsageError
from watchdog.jobs import TIMESTAMP_FIELDS, Job, format_timestamp, parse_job
from watchdog.poll.ended import ended_job
from watchdog.rules.budgets import compile_budgets
from watchdog.rules.evaluate import CompiledRule, Verdict, compile_rules, evaluate
from watchdog.rules.plan import Plan, is_exempt, plan
from watchdog.rules.poll_plan import PlanSettings, plan_poll
from watchdog.state.snapshot import EndedJob, StateSnapshot
from watchdog.tools.commands import read_input

if TYPE_CHECKING:
    import argparse

EXPECTATIONS = ("cancel", "warn", "none")
CASE_KEYS = frozenset({"name", "now", "job", "status_since", "first_match", "expect", "rule"})
FLEET_KEYS = frozenset({"name", "now", "fleet", "ended", "expect_cancels"})


@dataclass(frozen=True, slots=True)
class Case:
    """One offline rule test."""

    name: str
    now: datetime
    job: Job
    status_since: datetime | None
    first_match: Mapping[str, datetime]
    expect: Literal["cancel", "warn", "none"]
    rule: str | None


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    plan: Plan
    verdicts: tuple[Verdict, ...]

    @property
    def passed(self) -> bool:
        if self.plan.outcome != self.case.expect:
            return False
        return self.case.expect == "none" or self.plan.rule == self.case.rule


@dataclass(frozen=True, slots=True)
class FleetCase:
    """One offline test of a whole poll: which jobs the plan cancels, and under which name."""

    name: str
    now: datetime
    jobs: tuple[Job, ...]
    ended: tuple[EndedJob, ...]
    expect: Mapping[str, str]


class CaseError(ValueError):
    """A malformed case; the message names where."""


def _time(value: Any, now: datetime, where: str) -> datetime:
    """An absolute ISO-8601 time, or one relative to `now` such as `-13h`."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise CaseError(f"{where}: expected a time such as -13h or 2026-11-28T03:00:00Z")
    text = value.strip()
    if text[:1] in "+-":
        try:
            return now + parse_relative(text)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        except OverflowError:
            raise ValueError(f"{where}: too far from now, got {text!r}") from None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{where}: expected a time such as -13h or an ISO-8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _job(record: Any, now: datetime, where: str) -> Job:
    if not isinstance(record, Mapping):
        raise CaseError(f"{where}: expected a mapping (a partial job record)")
    full: dict[str, Any] = {
        "uuid": f"{uuidlib.uuid4()}-007",
        "name": "test-job",
        "owner": "testuser",
        "appId": "app",
        "execSystemId": "system",
        "nodeCount": 1,
        "tags": [],
        # A case lists what matters; inputs it does not list are empty, not unknown.
        "description": "",
        "fileInputs": [],
        "parameterSet": {},
    }
    full.update(record)
    for key in TIMESTAMP_FIELDS:
        if full.get(key) is not None:
            full[key] = format_timestamp(_time(full[key], now, f"{where}.{key}"))
    if "status" not in record:
        raise ValueError(f"{where}.status: required")
    try:
        return parse_job(full)
    except JobRecordError as exc:
        raise ValueError(f"{where}: {exc.detail}") from exc


def _case(raw: Any, index: int, file_now: datetime, rule_names: set[str]) -> Case:
    where = f"cases[{index}]"
    if not isinstance(raw, Mapping):
        raise CaseError(f"{where}: expected a mapping")
    unknown = sorted(set(raw) - CASE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}")
    name = str(raw.get("name") or f"case {index + 1}")
    where = f"cases[{index}] ({name})"
    now = _time(raw["now"], file_now, f"{where}.now") if "now" in raw else file_now
    if "job" not in raw:
        raise ValueError(f"{where}.job: required")
    expect = raw.get("expect")
    if expect not in EXPECTATIONS:
        raise ValueError(f"{where}.expect: expected one of cancel, warn, none, got {expect!r}")
    rule = raw.get("rule")
    if expect != "none" and not rule:
        raise ValueError(f"{where}.rule: required when expect is {expect}")
    if rule is not None and rule not in rule_names:
        raise ValueError(f"{where}.rule: no rule named {rule!r} in the configuration")
    since = raw.get("status_since")
    first_raw = raw.get("first_match") or {}
    if not isinstance(first_raw, Mapping):
        raise CaseError(f"{where}.first_match: expected a mapping of rule name to time")
    first_match = {str(k): _time(v, now, f"{where}.first_match.{k}") for k, v in first_raw.items()}
    return Case(
        name=name,
        now=now,
        job=_job(raw["job"], now, f"{where}.job"),
        status_since=_time(since, now, f"{where}.status_since") if since is not None else None,
        first_match=first_match,
        expect=expect,
        rule=rule,
    )


def _fleet_case(
    raw: Mapping[str, Any], index: int, file_now: datetime, names: set[str]
) -> FleetCase:
    name = str(raw.get("name") or f"case {index + 1}")
    where = f"cases[{index}] ({name})"
    unknown = sorted(set(raw) - FLEET_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} in a fleet case")
    now = _time(raw["now"], file_now, f"{where}.now") if "now" in raw else file_now
    jobs = [
        _job(r, now, f"{where}.fleet[{n}]") for n, r in enumerate(_records(raw, "fleet", where))
    ]
    ended = [
        _ended_record(r, now, f"{where}.ended[{n}]")
        for n, r in enumerate(_records(raw, "ended", where))
    ]
    seen = [job.name for job in jobs] + [job.name for job in ended]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise ValueError(f"{where}: job name {twice[0]!r} used twice (names tell jobs apart)")
    expect = raw.get("expect_cancels")
    if not isinstance(expect, Mapping):
        raise CaseError(f"{where}.expect_cancels: expected a mapping of job name to rule or budget")
    for job_name, rule in expect.items():
        if job_name not in {job.name for job in jobs}:
            raise ValueError(f"{where}.expect_cancels: no job named {job_name!r} in the fleet")
        if rule not in names:
            raise ValueError(f"{where}.expect_cancels.{job_name}: no rule or budget {rule!r}")
    wanted = {str(k): str(v) for k, v in expect.items()}
    return FleetCase(name, now, tuple(jobs), tuple(ended), wanted)


def _records(raw: Mapping[str, Any], key: str, where: str) -> list[Any]:
    records = raw.get(key) or []
    if not isinstance(records, list):
        raise CaseError(f"{where}.{key}: expected a list of partial job records")
    return records


def _ended_record(record: Any, now: datetime, where: str) -> EndedJob:
    job = _job(record, now, where)
    end = record.get("remoteEnded") if isinstance(record, Mapping) else None
    if end is None:
        raise ValueError(f"{where}.remoteEnded: required for an ended job")
    return ended_job(job, _time(end, now, f"{where}.remoteEnded"))


def run_fleet_case(
    case: FleetCase, rules: Sequence[CompiledRule], config: OfflineConfig
) -> dict[str, str]:
    """Plan the fleet as one poll of the daemon: job name -> the rule or budget cancelling it."""
    settings = PlanSettings.from_safety(
        config.safety,
        dry_run=False,
        budgets=compile_budgets(config.budgets),
        charge_rates=config.charge_rates,
    )
    decided = plan_poll(case.jobs, rules, StateSnapshot(ended=case.ended), case.now, settings)
    return {cancel.job.name: cancel.rule for cancel in decided.cancels}


def load_cases(path: Path, config: OfflineConfig) -> list[Case | FleetCase]:
    """Read a case file.

    Raises:
        InputError: the file is missing, not YAML, or a case is malformed (the message names it).
    """
    source = f"cases file {path}"
    text = read_input(str(path), "cases file")
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise InputError([f"invalid YAML{where}: {what}"], source=source) from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise InputError([f"invalid YAML: {exc}"], source=source) from None
    if not isinstance(data, Mapping) or not isinstance(data.get("cases"), list):
        raise InputError(["expected a mapping with a list under 'cases'"], source=source)
    unknown = sorted(set(data) - {"now", "cases"})
    if unknown:
        raise InputError([f"{unknown[0]}: unknown key"], source=source)
    rule_names = {rule.name for rule in config.rules}
    names = rule_names | {budget.name for budget in config.budgets}
    problems: list[str] = []
    cases: list[Case | FleetCase] = []
    try:
        file_now = _time(data["now"], datetime.now(UTC), "now") if "now" in data else None
    except ValueError as exc:
        raise InputError([str(exc)], source=source) from exc
    for index, raw in enumerate(data["cases"]):
        try:
            now = file_now or datetime.now(UTC)
            if isinstance(raw, Mapping) and "fleet" in raw:
                cases.append(_fleet_case(raw, index, now, names))
                continue
            cases.append(_case(raw, index, now, rule_names))
        except (ValueError, KeyError) as exc:
            problems.append(str(exc))
    if problems:
        raise InputError(problems, source=source)
    return cases


def run_case(case: Case, rules: Sequence[CompiledRule], config: OfflineConfig) -> CaseResult:
    """Evaluate one case exactly as the daemon would."""
    verdicts = evaluate(case.job, rules, case.now, case.status_since)
    exempt = is_exempt(case.job, config.safety.exempt)
    decided = plan(verdicts, case.first_match, case.now, exempt=exempt)
    return CaseResult(case=case, plan=decided, verdicts=tuple(verdicts))


def _cancels(by_job: Mapping[str, str]) -> str:
    return ", ".join(f"{job} by {rule}" for job, rule in sorted(by_job.items())) or "none"


def _describe(outcome: str, rule: str | None) -> str:
    return outcome if outcome == "none" or rule is None else f"{outcome} by {rule}"


def cmd_test_rules(args: argparse.Namespace) -> int:
    if not args.config:
        raise UsageError("no configuration: pass -c FILE or set TAPIS_WATCHDOG_CONFIG")
    config = load_offline_config(Path(args.config))
    rules = compile_rules(config.rules)
    cases = load_cases(Path(args.cases), config)
    failed = 0
    out = sys.stdout
    for case in cases:
        if isinstance(case, FleetCase):
            cancelled = run_fleet_case(case, rules, config)
            if cancelled == dict(case.expect):
                print(f"ok    {case.name}", file=out)
                continue
            failed += 1
            print(f"FAIL  {case.name}", file=out)
            print(f"      expected cancels: {_cancels(case.expect)}", file=out)
            print(f"      got cancels:      {_cancels(cancelled)}", file=out)
            continue
        result = run_case(case, rules, config)
        if result.passed:
            print(f"ok    {case.name}", file=out)
            continue
        failed += 1
        print(f"FAIL  {case.name}", file=out)
        print(f"      expected: {_describe(case.expect, case.rule)}", file=out)
        got = _describe(result.plan.outcome, result.plan.rule)
        exempt = " (job is exempt)" if result.plan.exempt else ""
        print(f"      got:      {got}{exempt}", file=out)
        for verdict in result.verdicts:
            mark = "MATCH" if verdict.matched else "no   "
            print(f"        {mark} {verdict.rule}: {verdict.reason}", file=out)
    passed = len(cases) - failed
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0
