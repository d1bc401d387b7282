"""Compiled rules and their evaluation: `evaluate(job, rules, now) -> [Verdict]`.

Pure: no I/O, nothing async, never reads the clock (`now` is passed in). A rule matches when every
`match` selector holds and its `when` conditions hold for certain; unknown data (no start time, no
node count, inputs missing from the record) never matches. Every verdict carries a sentence a person
can read (`runtime 12h03m exceeds 12h`, `app namd does not match opensees*, adcirc`) and one detail
line per selector and condition checked, for `tapis-watchdog explain`.

A poll asks every rule about every job, and almost every answer is "no": `evaluate_matches`
decides each rule first (`decide_rule`: no sentences, stopping at the first selector or condition
that fails) and explains only the rules that match. `evaluate` explains them all, for `explain`
and `test-rules`. The verdict's `matched` is always the decision, so the two never disagree.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
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

    from watchdog.config.rule_schema import Match, RuleConfig
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


_WILDCARDS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Selector:
    """One `match` selector: a label, how to read the job, and a test that explains itself."""

    key: str
    label: str
    read: Callable[[Job], str | tuple[str, ...]]
    values: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    """Values matched as they are: statuses, tags, and globs without a wildcard."""
    _glob: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    """The globs with a wildcard, as one pattern (any of them)."""

    def __post_init__(self) -> None:
        globbed = self.key not in {"status", "tags_any"}
        wild = [v for v in self.values if globbed and _WILDCARDS & set(v)]
        exact = frozenset(v for v in self.values if v not in wild)
        combined = "|".join(f"(?:{fnmatch.translate(g)})" for g in wild)
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_glob", re.compile(combined, re.DOTALL) if wild else None)

    def holds(self, job: Job) -> bool:
        """Whether the selector holds for the job (the decision `check` explains)."""
        value = self.read(job)
        if type(value) is str:
            if value in self._exact:
                return True
            glob = self._glob
            return glob is not None and glob.match(value) is not None
        if self.key == "tags_any":
            return not self._exact.isdisjoint(value)
        text = ", ".join(value)
        return text in self._exact or (
            self._glob is not None and self._glob.match(text) is not None
        )

    def check(self, job: Job) -> tuple[bool, str]:
        """Whether the selector holds for the job, and the sentence that says why."""
        ok = self.holds(job)
        value = self.read(job)
        wanted = ", ".join(self.values)
        if self.key == "status":
            verb = ("is" if ok else "is not") + (" one of" if len(self.values) > 1 else "")
            return ok, f"status {value} {verb} {wanted}"
        if self.key == "tags_any":
            tags = value if isinstance(value, tuple) else (value,)
            hit = next((t for t in tags if t in self.values), None)
            if ok and hit is not None:
                return ok, f"tag {hit} is one of {wanted}"
            return ok, f"tags {', '.join(tags) or '(none)'} include none of {wanted}"
        text = value if isinstance(value, str) else ", ".join(value)
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
        return all(selector.holds(job) for selector in self.selectors)


def compile_selectors(match: Match) -> tuple[Selector, ...]:
    """A `match` map's selectors (a rule's, or a budget's group)."""
    selectors: list[Selector] = []
    for key, label, read in _GLOB_SELECTORS:
        globs = getattr(match, key)
        if globs is not None:
            selectors.append(Selector(key, label, read, globs, _globs(globs)))
    if match.status is not None:
        selectors.append(Selector("status", "status", _status, match.status, ()))
    if match.tags_any is not None:
        selectors.append(Selector("tags_any", "tags", _tags, match.tags_any, ()))
    return tuple(selectors)


def compile_rule(rule: RuleConfig) -> CompiledRule:
    """Compile one validated rule (its patterns were checked at load, so this does not fail)."""
    return CompiledRule(
        name=rule.name,
        description=rule.description,
        action=rule.action,
        grace=rule.grace,
        dry_run=rule.dry_run,
        selectors=compile_selectors(rule.match),
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


def _facts(job: Job, now: datetime, status_since: datetime | None) -> Facts:
    return Facts(job, aware(now) or now, aware(status_since))


def _decide(rule: CompiledRule, facts: Facts) -> bool:
    """Whether the rule matches: every selector holds and `when` holds for certain."""
    try:
        job = facts.job
        for selector in rule.selectors:
            if not selector.holds(job):
                return False
        return rule.when.decide(facts) is True
    except Exception:  # a rule must never stop a poll; not matching is the safe answer
        return False


def decide_rule(
    job: Job, rule: CompiledRule, now: datetime, status_since: datetime | None = None
) -> bool:
    """Whether the rule matches the job: the `matched` of its verdict, without the verdict."""
    return _decide(rule, _facts(job, now, status_since))


def _verdict(rule: CompiledRule, facts: Facts, *, matched: bool) -> Verdict:
    """The rule's verdict, explained; `matched` is the decision, taken as it is."""
    try:
        checks = [(s.key, *s.check(facts.job)) for s in rule.selectors]
        details = [f"{'yes' if ok else 'no '} match.{key}: {why}" for key, ok, why in checks]
        outcome = rule.when.evaluate(facts, "when")
        details.extend(outcome.details)
        failed = next((why for _, ok, why in checks if not ok), None)
        reason = failed if failed is not None else outcome.reason
    except Exception as exc:  # a rule must never stop a poll
        what = "cannot explain" if matched else "cannot evaluate"
        reason, details = f"{what}: {type(exc).__name__}: {exc}", []
    return Verdict(
        rule=rule.name,
        matched=matched,
        action=rule.action,
        reason=reason,
        details=tuple(details),
        grace=rule.grace,
        dry_run=bool(rule.dry_run),
    )


def evaluate_rule(
    job: Job, rule: CompiledRule, now: datetime, status_since: datetime | None = None
) -> Verdict:
    """One rule's verdict on one job. Never raises: a failure is a non-match saying why."""
    facts = _facts(job, now, status_since)
    return _verdict(rule, facts, matched=_decide(rule, facts))


def evaluate(
    job: Job,
    rules: Sequence[CompiledRule],
    now: datetime,
    status_since: datetime | None = None,
) -> list[Verdict]:
    """One verdict per rule, in file order, every one explained (for `explain`, `test-rules`).

    `status_since` is when the job entered its current status (from the state store or the job's
    history); without it, RUNNING uses remoteStarted, QUEUED remoteSubmitted, and any other
    status's time is unknown (an `in_status_over` condition then does not hold).
    """
    facts = _facts(job, now, status_since)
    return [_verdict(rule, facts, matched=_decide(rule, facts)) for rule in rules]


def evaluate_matches(
    job: Job,
    rules: Sequence[CompiledRule],
    now: datetime,
    status_since: datetime | None = None,
) -> list[Verdict]:
    """The verdicts of the rules that match, in file order: `evaluate` without the others.

    Each rule is decided first and only a match is explained, so a job no rule matches costs
    no sentences at all. `rules.plan` needs no more than these.
    """
    facts = _facts(job, now, status_since)
    return [_verdict(rule, facts, matched=True) for rule in rules if _decide(rule, facts)]


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
