"""The `when` conditions of a rule, compiled, and their evaluation against one job at one time.

Evaluation is three-valued: a condition holds (True), does not (False), or cannot be known from
the data at hand (None: no start time, no node count, inputs not in the record). Only True makes
a rule match, and `not` of an unknown stays unknown, so missing data never leads to an action.
Pure: no I/O, no clock; `now` comes in through `Facts`.

Every condition answers in two ways from one piece of code: `decide(facts)` gives the answer
alone (what a poll needs for every job and rule: no sentences, no exact fractions, stops at the
first condition that settles it), and `evaluate(facts, path)` gives the same answer, taken from
`decide`, with the sentence and the detail lines that explain it (for a match, `explain` and
`test-rules`). Composite conditions combine their parts' answers through `all_of` and `any_of`
in both, so the two can never disagree.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from watchdog.config.fields import compact_duration
from watchdog.config.rule_schema import INPUT_SOURCES, compile_pattern
from watchdog.durations import format_duration
from watchdog.jobs import implausible_times

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from watchdog.config.rule_schema import Conditions
    from watchdog.jobs import Job

Tri = bool | None
_HOUR = Fraction(3600)
_HOUR_US = 3_600_000_000
_ZERO = timedelta(0)
# The Tapis attribute each input kind is read from, to tell "no match" from "not in the record".
SOURCE_FIELDS: dict[str, str] = {
    "file_inputs": "fileInputs",
    "app_args": "parameterSet",
    "container_args": "parameterSet",
    "scheduler_options": "parameterSet",
    "env": "parameterSet",
    "name": "name",
    "description": "description",
}


def aware(moment: datetime | None) -> datetime | None:
    """A datetime in UTC; a naive one is taken to be UTC already."""
    if moment is None or moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_UNSET: Any = object()


class Facts:
    """What the conditions read about one job at one moment, each computed once when first read
    (one `Facts` serves every rule evaluated for the job)."""

    __slots__ = (
        "_age",
        "_entered",
        "_impossible",
        "_runtime",
        "_started",
        "job",
        "now",
        "status_since",
    )

    def __init__(self, job: Job, now: datetime, status_since: datetime | None) -> None:
        self.job = job
        self.now = now
        self.status_since = status_since
        self._impossible: Any = _UNSET
        self._started: Any = _UNSET
        self._runtime: Any = _UNSET
        self._age: Any = _UNSET
        self._entered: Any = _UNSET

    @property
    def impossible(self) -> dict[str, str]:
        """The record's times that cannot be true (see `jobs.implausible_times`): unknown here."""
        if self._impossible is _UNSET:
            self._impossible = implausible_times(self.job, self.now)
        impossible: dict[str, str] = self._impossible
        return impossible

    @property
    def started(self) -> datetime | None:
        if self._started is _UNSET:
            job = self.job
            self._started = (
                None if "remoteStarted" in self.impossible else aware(job.remote_started)
            )
        started: datetime | None = self._started
        return started

    @property
    def runtime(self) -> timedelta | None:
        """now - remoteStarted (0 before the start); a job that ended stops its clock. None when
        remoteStarted (or the end of an ended job) cannot be true."""
        if self._runtime is _UNSET:
            self._runtime = self._compute_runtime()
        runtime: timedelta | None = self._runtime
        return runtime

    def _compute_runtime(self) -> timedelta | None:
        if "remoteStarted" in self.impossible:
            return None
        started = self.started
        if started is None:
            return _ZERO
        job = self.job
        end = aware(job.ended) if job.is_terminal and job.ended else None
        if end is not None and "ended" in self.impossible:
            return None
        return max((end or self.now) - started, _ZERO)

    def why_unknown(self, *fields: str) -> str:
        """The defects of `fields`, for a reason sentence."""
        return "; ".join(self.impossible[f] for f in fields if f in self.impossible)

    @property
    def age(self) -> timedelta | None:
        if self._age is _UNSET:
            created = None if "created" in self.impossible else aware(self.job.created)
            self._age = None if created is None else max(self.now - created, _ZERO)
        age: timedelta | None = self._age
        return age

    @property
    def entered_status(self) -> datetime | None:
        if self._entered is _UNSET:
            job = self.job
            if self.status_since is not None:
                self._entered = aware(self.status_since)
            elif job.status == "RUNNING":
                self._entered = self.started
            elif job.status == "QUEUED" and "remoteSubmitted" not in self.impossible:
                self._entered = aware(job.remote_submitted)
            else:
                self._entered = None
        entered: datetime | None = self._entered
        return entered


@dataclass(frozen=True, slots=True)
class Outcome:
    """One condition's answer, the sentence that explains it, and one line per leaf checked."""

    holds: Tri
    reason: str
    details: tuple[str, ...]


def all_of(answers: Iterable[Tri]) -> Tri:
    """Every answer holds: False if one is False, else unknown if one is, else True."""
    result: Tri = True
    for answer in answers:
        if answer is False:
            return False
        if answer is None:
            result = None
    return result


def any_of(answers: Iterable[Tri]) -> Tri:
    """At least one answer holds: True if one is True, else unknown if one is, else False."""
    result: Tri = False
    for answer in answers:
        if answer is True:
            return True
        if answer is None:
            result = None
    return result


def negate(answer: Tri) -> Tri:
    """`not`: unknown stays unknown."""
    return None if answer is None else not answer


def _line(path: str, holds: Tri, reason: str) -> str:
    mark = {True: "yes", False: "no ", None: "?  "}[holds]
    return f"{mark} {path}: {reason}"


def _leaf(path: str, reason: str, *, holds: Tri) -> Outcome:
    return Outcome(holds, reason, (_line(path, holds, reason),))


def _hours(delta: timedelta) -> str:
    """A runtime in hours and minutes, the unit of node hours: `64h00m`."""
    minutes = int(delta.total_seconds()) // 60
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


class Condition(Protocol):
    @property
    def key(self) -> str: ...

    def decide(self, facts: Facts) -> Tri: ...

    def evaluate(self, facts: Facts, path: str) -> Outcome: ...

    def describe(self) -> str: ...

    def walk(self) -> Iterator[Condition]: ...


@dataclass(frozen=True, slots=True)
class RuntimeOver:
    threshold: timedelta
    key: ClassVar[str] = "runtime_over"

    def decide(self, facts: Facts) -> Tri:
        runtime = facts.runtime
        return None if runtime is None else runtime > self.threshold

    def evaluate(self, facts: Facts, path: str) -> Outcome:
        runtime, limit = facts.runtime, compact_duration(self.threshold)
        if runtime is None:
            reason = f"runtime unknown ({facts.why_unknown('remoteStarted', 'ended')})"
            return _leaf(path, reason, holds=None)
        if self.decide(facts):
            shown = format_duration(runtime, above=self.threshold)
            return _leaf(path, f"runtime {shown} exceeds {limit}", holds=True)
        note = "" if facts.started is not None else " (not started)"
        reason = f"runtime {format_duration(runtime)} does not exceed {limit}{note}"
        return _leaf(path, reason, holds=False)

    def describe(self) -> str:
        return f"runtime > {compact_duration(self.threshold)}"

    def walk(self) -> Iterator[Condition]:
        yield self


@dataclass(frozen=True, slots=True)
class AgeOver:
    threshold: timedelta
    key: ClassVar[str] = "age_over"

    def decide(self, facts: Facts) -> Tri:
        age = facts.age
        return None if age is None else age > self.threshold

    def evaluate(self, facts: Facts, path: str) -> Outcome:
        age, limit = facts.age, compact_duration(self.threshold)
        holds = self.decide(facts)
        if age is None:
            why = facts.why_unknown("created") or "the job has no created time"
            return _leaf(path, f"age unknown ({why})", holds=holds)
        if holds:
            shown = format_duration(age, above=self.threshold)
            return _leaf(path, f"age {shown} exceeds {limit}", holds=True)
        return _leaf(path, f"age {format_duration(age)} does not exceed {limit}", holds=False)

    def describe(self) -> str:
        return f"age > {compact_duration(self.threshold)}"

    def walk(self) -> Iterator[Condition]:
        yield self


@dataclass(frozen=True, slots=True)
class InStatusOver:
    threshold: timedelta
    key: ClassVar[str] = "in_status_over"

    def decide(self, facts: Facts) -> Tri:
        since = facts.entered_status
        if since is None:
            age = facts.age
            # Time in a status never exceeds the job's age: a young job needs no history.
            return False if age is not None and age <= self.threshold else None
        return max(facts.now - since, _ZERO) > self.threshold

    def evaluate(self, facts: Facts, path: str) -> Outcome:
        status, limit = facts.job.status, compact_duration(self.threshold)
        holds = self.decide(facts)
        since = facts.entered_status
        if since is None:
            age = facts.age
            if holds is False and age is not None:
                reason = (
                    f"in {status} for at most {format_duration(age)} (its age), not over {limit}"
                )
                return _leaf(path, reason, holds=holds)
            return _leaf(path, f"time in {status} unknown", holds=holds)
        spent = max(facts.now - since, _ZERO)
        over = "over" if holds else "not over"
        # `above` matters only when it is over: then the text must show it over.
        shown = format_duration(spent, above=self.threshold)
        return _leaf(path, f"in {status} for {shown}, {over} {limit}", holds=holds)

    def describe(self) -> str:
        return f"time in status > {compact_duration(self.threshold)}"

    def walk(self) -> Iterator[Condition]:
        yield self


@dataclass(frozen=True, slots=True)
class NodeHoursOver:
    limit: float
    key: ClassVar[str] = "node_hours_over"
    _node_us: int = field(init=False, repr=False, compare=False)
    """floor(limit in node-microseconds): an integer exceeds the limit iff it exceeds this."""

    def __post_init__(self) -> None:
        # Exact arithmetic, once: at the threshold, a float rounding must not tip the answer.
        node_us = math.floor(Fraction(self.limit) * _HOUR_US) if math.isfinite(self.limit) else 0
        object.__setattr__(self, "_node_us", node_us)

    def decide(self, facts: Facts) -> Tri:
        nodes = facts.job.node_count
        if nodes is None:
            return None
        if not math.isfinite(self.limit):
            return self.limit < 0
        runtime = facts.runtime
        if runtime is None:
            return None
        return runtime // timedelta(microseconds=1) * nodes > self._node_us

    def evaluate(self, facts: Facts, path: str) -> Outcome:
        nodes = facts.job.node_count
        holds = self.decide(facts)
        if nodes is None:
            return _leaf(path, "node hours unknown (the job has no nodeCount)", holds=holds)
        runtime = facts.runtime
        if runtime is None:
            reason = f"node hours unknown ({facts.why_unknown('remoteStarted', 'ended')})"
            return _leaf(path, reason, holds=holds)
        exact = Fraction(runtime // timedelta(microseconds=1), 1_000_000) / _HOUR * nodes
        how = f"({nodes} node{'s' if nodes != 1 else ''} x {_hours(runtime)})"
        shown, limit = f"{float(exact):.1f}", _number(self.limit)
        if holds:
            return _leaf(path, f"node hours {shown} exceed {limit} {how}", holds=True)
        return _leaf(path, f"node hours {shown} do not exceed {limit} {how}", holds=False)

    def describe(self) -> str:
        return f"node hours > {_number(self.limit)}"

    def walk(self) -> Iterator[Condition]:
        yield self


def input_strings(job: Job, source: str) -> Iterator[str]:
    """Every input string of one kind, as `input_matches` searches them."""
    if source == "file_inputs":
        for item in job.file_inputs:
            yield from (s for s in (item.source_url, item.target_path) if s)
    elif source in {"app_args", "container_args", "scheduler_options"}:
        yield from getattr(job, source)
    elif source == "env":
        yield from (f"{k}={v}" for k, v in job.env if not k.startswith("_tapis"))
    elif source == "name" and job.name:
        yield job.name
    elif source == "description" and job.description:
        yield job.description


@dataclass(frozen=True, slots=True)
class InputMatches:
    pattern: str
    sources: tuple[str, ...]
    regex: Any
    key: ClassVar[str] = "input_matches"

    def first_match(self, job: Job) -> tuple[str, str] | None:
        """The first (source, input string) the pattern is found in, if any."""
        search = self.regex.search
        for source in self.sources:
            for text in input_strings(job, source):
                if search(text.encode("utf-8", "replace")) is not None:
                    return source, text
        return None

    def _missing(self, job: Job) -> list[str]:
        """The sources whose Tapis attribute the record did not carry."""
        fields = job.fields
        return [s for s in self.sources if fields and SOURCE_FIELDS[s] not in fields]

    def decide(self, facts: Facts) -> Tri:
        job = facts.job
        if self.first_match(job) is not None:
            return True
        return None if self._missing(job) else False

    def evaluate(self, facts: Facts, path: str) -> Outcome:
        job = facts.job
        holds = self.decide(facts)
        found = self.first_match(job) if holds else None
        if found is not None:
            source, text = found
            return _leaf(path, f"input {source} {_quote(text)} matches {self.pattern}", holds=holds)
        where = "" if self.sources == INPUT_SOURCES else f" in {', '.join(self.sources)}"
        missing = self._missing(job)
        if missing:
            reason = f"no input{where} matches {self.pattern}, and {', '.join(missing)} unknown"
            return _leaf(path, reason + " (not in the job record)", holds=holds)
        return _leaf(path, f"no input{where} matches {self.pattern}", holds=holds)

    def describe(self) -> str:
        where = "" if self.sources == INPUT_SOURCES else f" in {'|'.join(self.sources)}"
        return f"an input{where} matches {self.pattern}"

    def walk(self) -> Iterator[Condition]:
        yield self


def _quote(text: str) -> str:
    shown = json.dumps(text, ensure_ascii=False)
    return shown if len(shown) <= 120 else shown[:116] + '..."'


@dataclass(frozen=True, slots=True)
class AllOf:
    """A condition map: every condition holds."""

    conditions: tuple[Condition, ...]
    key: ClassVar[str] = "when"

    def decide(self, facts: Facts) -> Tri:
        # A generator: all_of stops at the first condition that fails.
        return all_of(c.decide(facts) for c in self.conditions)

    def evaluate(self, facts: Facts, path: str) -> Outcome:
        outcomes = [c.evaluate(facts, f"{path}.{c.key}") for c in self.conditions]
        details = tuple(line for o in outcomes for line in o.details)
        holds = all_of(o.holds for o in outcomes)
        if holds is True:
            return Outcome(holds, "; ".join(o.reason for o in outcomes), details)
        first = next(o for o in outcomes if o.holds is holds)
        return Outcome(holds, first.reason, details)

    def describe(self) -> str:
        return " and ".join(c.describe() for c in self.conditions)

    def walk(self) -> Iterator[Condition]:
        yield self
        for condition in self.conditions:
            yield from condition.walk()


@dataclass(frozen=True, slots=True)
class AnyOf:
    """`any`: at least one of the condition maps holds."""

    options: tuple[AllOf, ...]
    key: ClassVar[str] = "any"

    def decide(self, facts: Facts) -> Tri:
        return any_of(o.decide(facts) for o in self.options)

    def evaluate(self, facts: Facts, path: str) -> Outcome:
        outcomes = [o.evaluate(facts, f"{path}[{i}]") for i, o in enumerate(self.options)]
        details = tuple(line for o in outcomes for line in o.details)
        holds = any_of(o.holds for o in outcomes)
        if holds is False:
            return Outcome(holds, "none of: " + "; ".join(o.reason for o in outcomes), details)
        first = next(o for o in outcomes if o.holds is holds)
        return Outcome(holds, first.reason, details)

    def describe(self) -> str:
        return "(" + " or ".join(o.describe() for o in self.options) + ")"

    def walk(self) -> Iterator[Condition]:
        yield self
        for option in self.options:
            yield from option.walk()


@dataclass(frozen=True, slots=True)
class Not:
    """`not`: the condition map does not hold (unknown stays unknown)."""

    inner: AllOf
    key: ClassVar[str] = "not"

    def decide(self, facts: Facts) -> Tri:
        return negate(self.inner.decide(facts))

    def evaluate(self, facts: Facts, path: str) -> Outcome:
        inner = self.inner.evaluate(facts, path)
        holds = negate(inner.holds)
        if holds is False:
            return Outcome(holds, f"{inner.reason} (excluded by not)", inner.details)
        return Outcome(holds, inner.reason, inner.details)

    def describe(self) -> str:
        return f"not ({self.inner.describe()})"

    def walk(self) -> Iterator[Condition]:
        yield self
        yield from self.inner.walk()


def compile_conditions(conditions: Conditions) -> AllOf:
    """Turn a validated condition map into its evaluable form, in the documented key order."""
    parts: list[Condition] = []
    if conditions.runtime_over is not None:
        parts.append(RuntimeOver(conditions.runtime_over))
    if conditions.age_over is not None:
        parts.append(AgeOver(conditions.age_over))
    if conditions.in_status_over is not None:
        parts.append(InStatusOver(conditions.in_status_over))
    if conditions.node_hours_over is not None:
        parts.append(NodeHoursOver(conditions.node_hours_over))
    if conditions.input_matches is not None:
        match = conditions.input_matches
        regex = compile_pattern(match.pattern)
        parts.append(InputMatches(match.pattern, match.sources, regex))
    if conditions.any_of is not None:
        parts.append(AnyOf(tuple(compile_conditions(c) for c in conditions.any_of)))
    if conditions.negated is not None:
        parts.append(Not(compile_conditions(conditions.negated)))
    return AllOf(tuple(parts))
