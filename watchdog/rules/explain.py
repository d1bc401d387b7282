"""A job's verdicts in words, rule by rule, and what the daemon does about them: pure.

`tapis-watchdog explain` prints `explain_lines`; the status page's job view shows the same
`Explanation`, so both say it in the same words: each rule's verdict and details, the silences in
force that spare the job, and the conclusion (`=> would cancel by rule ...`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from watchdog.durations import format_duration
from watchdog.rules.evaluate import evaluate
from watchdog.rules.plan import is_exempt, plan
from watchdog.rules.silence import silences_by_rule, spares

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from watchdog.config.model import ExemptSettings
    from watchdog.jobs import Job
    from watchdog.rules.evaluate import CompiledRule, Verdict
    from watchdog.rules.plan import Plan, Step
    from watchdog.state.schema import Silence

__all__ = [
    "Explanation",
    "describe_silences",
    "explain",
    "explain_lines",
    "spared_sentence",
    "verdict_line",
]

_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every rule's verdict on one job at one time, the silences sparing it, the conclusion."""

    job: Job
    verdicts: tuple[Verdict, ...]
    silences: tuple[str, ...]
    conclusion: str

    @property
    def header(self) -> str:
        job = self.job
        return f"job {job.uuid} ({job.name}) owner {job.owner} app {job.app_id} status {job.status}"


def _rules(silence: Silence) -> str:
    return "every cancel" if silence.rule is None else f"cancels by rule {silence.rule}"


def describe_silences(job: Job, silences: Sequence[Silence], now: datetime) -> list[str]:
    """One line per silence in force that spares the job (from some rule or from all)."""
    lines = []
    for silence in silences:
        rule = silence.rule or ""
        if not silence.active(now) or not spares(silence, job, rule, now):
            continue
        lines.append(
            f"silence {silence.id} spares it from {_rules(silence)} until "
            f"{silence.until:{_TIME}} (by {silence.created_by}: {silence.reason})"
        )
    return lines


def spared_sentence(step: Step) -> str:
    """What happens to a cancel a silence spares."""
    silence = step.silence
    assert silence is not None
    return (
        f"would cancel by rule {step.verdict.rule}, but silence {silence.id} spares it until "
        f"{silence.until:{_TIME}} (by {silence.created_by}: {silence.reason}); the cancel "
        "comes at the first poll after that if it still matches"
    )


def _conclusion(decided: Plan, running: bool) -> str:  # noqa: PLR0911 - one sentence per case
    step = next((step for step in decided.steps if step.kind == "grace"), None)
    if decided.exempt:
        return "exempt: the watchdog never acts on this job"
    if decided.winner is not None:
        return f"would cancel by rule {decided.winner.rule}"
    if decided.silenced:
        return spared_sentence(decided.silenced[0])
    if step is not None and step.silence is not None and step.cancel_at is not None:
        return (
            f"would warn by rule {step.verdict.rule}; silenced until "
            f"{step.silence.until:{_TIME}}, so the cancel comes at "
            f"{step.cancel_at:{_TIME}} at the earliest if it still matches"
        )
    if step is not None and running and step.grace_until is not None:
        until = step.grace_until
        if until.microsecond:  # rounded up, as the warnings say it: never before this time
            until = until.replace(microsecond=0) + timedelta(seconds=1)
        return (
            f"grace period of rule {step.verdict.rule} running: cancel at "
            f"{until:{_TIME}} if it still matches; no cancel now"
        )
    if step is not None and step.verdict.grace is not None:
        return (
            f"would warn by rule {step.verdict.rule}, and cancel after a grace of "
            f"{format_duration(step.verdict.grace)} if it still matches; no cancel now"
        )
    if decided.outcome == "warn":
        return f"would warn by rule {decided.rule}; no cancel"
    return "no cancel"


def explain(
    job: Job,
    rules: Sequence[CompiledRule],
    now: datetime,
    status_since: datetime | None,
    *,
    exempt: ExemptSettings,
    first_match: Mapping[str, datetime] | None = None,
    silences: Sequence[Silence] = (),
) -> Explanation:
    """Evaluate the job and decide as the daemon does.

    `first_match` holds when each rule's grace period started; without it, the job is decided
    as one seen for the first time at `now`. `silences` are the silences in force.
    """
    verdicts = evaluate(job, rules, now, status_since)
    silenced = silences_by_rule(job, [r.name for r in rules], silences, now)
    decided = plan(
        verdicts, first_match or {}, now, exempt=is_exempt(job, exempt), silenced=silenced
    )
    grace = next((step for step in decided.steps if step.kind == "grace"), None)
    running = bool(first_match) and grace is not None and grace.verdict.rule in (first_match or {})
    return Explanation(
        job=job,
        verdicts=tuple(verdicts),
        silences=tuple(describe_silences(job, silences, now)),
        conclusion=_conclusion(decided, running),
    )


def verdict_line(verdict: Verdict) -> str:
    """`[MATCH] rule (action): reason`, as `explain` prints it."""
    mark = "MATCH" if verdict.matched else "no"
    return f"[{mark}] {verdict.rule} ({verdict.action}): {verdict.reason}"


def explain_lines(explanation: Explanation) -> list[str]:
    """The lines `tapis-watchdog explain` prints for one job."""
    lines = [explanation.header]
    for verdict in explanation.verdicts:
        lines.append(f"  {verdict_line(verdict)}")
        lines.extend(f"      {line}" for line in verdict.details)
    lines.extend(f"  {line}" for line in explanation.silences)
    lines.append(f"  => {explanation.conclusion}")
    return lines
