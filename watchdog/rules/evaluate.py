"""Compiled rules and their evaluation: `evaluate(job, rules, now) -> [Verdict]`.

Pure: no I/O, nothing async, never reads the clock (`now` is passed in). A rule matches when every
`match` selector holds and its `when` conditions hold for certain; unknown data (no start time, no
node count, inputs missing from the record) never matches. Every verdict carries a sentence a person
can read (`runtime 12h03m exceeds 12h`, `app namd does not match opensees*, adcirc`) and one detail
line per selector and condition checked, for `tapis-watchdog explain`.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from watchdog.config.fields import compact_duration
from watchdog.jobs import INPUT_FIELDS, SUMMARY_FIELDS
from watchdog.rules.conditions import (
    SOURCE_FIELDS,
    Facts,
    InputMatches,
    InStatusOver,
    aware,
    compile_conditions,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime, timedelta

    from watchdog.config.rule_schema import RuleConfig
    from watchdog.jobs import Job
    from watchdog.rules.conditions import AllOf

Action = Literal["cancel", "warn"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one rule says about one job."""

    rule: str
    matched: bool
    action: Action
    reason: str
    details: tuple[str, ...]
    grace: timedelta | None
    dry_run: bool


@dataclass(frozen=True, slots=True)
class Selector:
    """One `match` selector: a label, how to read the job, and a test that explains itself."""

    key: str
    label: str
    read: Callable[[Job], str | tuple[str, ...]]
    values: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]

    def check(self, job: Job) -> tuple[bool, str]:
        """Whether the selector holds for the job, and the sentence that says why."""
        value = self.read(job)
        wanted = ", ".join(self.values)
        if self.key == "status":
            ok = value in self.values
            verb = ("is" if ok else "is not") + (" one of" if len(self.values) > 1 else "")
            return ok, f"status {value} {verb} {wanted}"
        if self.key == "tags_any":
            tags = value if isinstance(value, tuple) else (value,)
            hit = next((t for t in tags if t in self.values), None)
            if hit is not None:
                return True, f"tag {hit} is one of {wanted}"
            return False, f"tags {', '.join(tags) or '(none)'} include none of {wanted}"
        text = value if isinstance(value, str) else ", ".join(value)
        ok = any(p.match(text) for p in self.patterns)
        shown = text or "(none)"
        return ok, f"{self.label} {shown} {'matches' if ok else 'does not match'} {wanted}"


def _globs(globs: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    # fnmatch.translate builds backtracking-safe patterns; case-sensitive, like Tapis ids.
    return tuple(re.compile(fnmatch.translate(g), re.DOTALL) for g in globs)


_GLOB_SELECTORS: tuple[tuple[str, str, Callable[[Job], str]], ...] = (
    ("app", "app", lambda job: job.app_id),
    ("exec_system", "exec system", lambda job: job.exec_system_id),
    ("owner", "owner", lambda job: job.owner),
    ("name", "name", lambda job: job.name),
    ("queue", "queue", lambda job: job.queue),
)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to evaluate: globs and RE2 patterns compiled, conditions as a tree."""

    name: str
    description: str | None
    action: Action
    grace: timedelta | None
    dry_run: bool | None
    selectors: tuple[Selector, ...]
    when: AllOf
    config: RuleConfig

    def matches_selectors(self, job: Job) -> bool:
        return all(selector.check(job)[0] for selector in self.selectors)


def compile_rule(rule: RuleConfig) -> CompiledRule:
    """Compile one validated rule (its patterns were checked at load, so this does not fail)."""
    selectors: list[Selector] = []
    for key, label, read in _GLOB_SELECTORS:
        globs = getattr(rule.match, key)
        if globs is not None:
            selectors.append(Selector(key, label, read, globs, _globs(globs)))
    if rule.match.status is not None:
        selectors.append(Selector("status", "status", _status, rule.match.status, ()))
    if rule.match.tags_any is not None:
        selectors.append(Selector("tags_any", "tags", _tags, rule.match.tags_any, ()))
    return CompiledRule(
        name=rule.name,
        description=rule.description,
        action=rule.action,
        grace=rule.grace,
        dry_run=rule.dry_run,
        selectors=tuple(selectors),
        when=compile_conditions(rule.when),
        config=rule,
    )


def _status(job: Job) -> str:
    return job.status


def _tags(job: Job) -> tuple[str, ...]:
    return job.tags


def compile_rules(rule_configs: Sequence[RuleConfig]) -> tuple[CompiledRule, ...]:
    """Compile the configuration's rules, in file order."""
    return tuple(compile_rule(rule) for rule in rule_configs)


def evaluate_rule(
    job: Job, rule: CompiledRule, now: datetime, status_since: datetime | None = None
) -> Verdict:
    """One rule's verdict on one job. Never raises: a failure is a non-match saying why."""
    dry_run = bool(rule.dry_run)
    try:
        checks = [(s.key, *s.check(job)) for s in rule.selectors]
        details = [f"{'yes' if ok else 'no '} match.{key}: {why}" for key, ok, why in checks]
        facts = Facts(job=job, now=aware(now) or now, status_since=aware(status_since))
        outcome = rule.when.evaluate(facts, "when")
        details.extend(outcome.details)
        failed = next((why for _, ok, why in checks if not ok), None)
        matched = failed is None and outcome.holds is True
        reason = failed if failed is not None else outcome.reason
    except Exception as exc:  # a rule must never stop a poll; not matching is the safe answer
        return Verdict(
            rule=rule.name,
            matched=False,
            action=rule.action,
            reason=f"cannot evaluate: {type(exc).__name__}: {exc}",
            details=(),
            grace=rule.grace,
            dry_run=dry_run,
        )
    return Verdict(
        rule=rule.name,
        matched=matched,
        action=rule.action,
        reason=reason,
        details=tuple(details),
        grace=rule.grace,
        dry_run=dry_run,
    )


def evaluate(
    job: Job,
    rules: Sequence[CompiledRule],
    now: datetime,
    status_since: datetime | None = None,
) -> list[Verdict]:
    """One verdict per rule, in file order.

    `status_since` is when the job entered its current status (from the state store or the job's
    history); without it, RUNNING uses remoteStarted, QUEUED remoteSubmitted, and any other
    status's time is unknown (an `in_status_over` condition then does not hold).
    """
    return [evaluate_rule(job, rule, now, status_since) for rule in rules]


def fields_needed(rules: Sequence[CompiledRule]) -> tuple[str, ...]:
    """The Tapis attributes a poll must `select` so that every rule can be evaluated."""
    fields = list(SUMMARY_FIELDS)
    for rule in rules:
        for condition in rule.when.walk():
            if isinstance(condition, InputMatches):
                fields.extend(SOURCE_FIELDS[source] for source in condition.sources)
    order = {name: index for index, name in enumerate((*SUMMARY_FIELDS, *INPUT_FIELDS))}
    return tuple(sorted(dict.fromkeys(fields), key=lambda name: order.get(name, len(order))))


def _in_status_thresholds(rule: CompiledRule) -> list[timedelta]:
    return [c.threshold for c in rule.when.walk() if isinstance(c, InStatusOver)]


def needs_status_since(job: Job, rules: Sequence[CompiledRule], now: datetime) -> bool:
    """Whether the job's history is worth fetching to learn when it entered its status.

    True only for a job neither RUNNING nor QUEUED (their entry times are in the record), when a
    rule whose `match` holds uses `in_status_over`, and the job is old enough for the answer to
    be "over" (time in a status never exceeds the job's age).
    """
    if job.status in {"RUNNING", "QUEUED"}:
        return False
    created, moment = aware(job.created), aware(now) or now
    for rule in rules:
        thresholds = _in_status_thresholds(rule)
        if not thresholds or not rule.matches_selectors(job):
            continue
        if created is None or moment - created > min(thresholds):
            return True
    return False


def describe_rule(rule: CompiledRule) -> str:
    """A one-line summary for `tapis-watchdog check`.

    Example: `frontera-12h: cancel RUNNING jobs of app opensees*|adcirc on frontera when
    runtime > 12h`.
    """
    parts = {s.key: "|".join(s.values) for s in rule.selectors}
    text = f"{rule.name}: {rule.action}"
    if rule.dry_run:
        text += " (dry run)"
    text += f" {parts['status']} jobs" if "status" in parts else " jobs"
    phrases = (
        ("app", "of app"),
        ("exec_system", "on"),
        ("owner", "owned by"),
        ("name", "named"),
        ("queue", "in queue"),
        ("tags_any", "tagged"),
    )
    for key, words in phrases:
        if key in parts:
            text += f" {words} {parts[key]}"
    text += f" when {rule.when.describe()}"
    if rule.grace is not None:
        text += f", after a {compact_duration(rule.grace)} grace"
    return text
