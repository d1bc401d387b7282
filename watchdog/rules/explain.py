"""A job's verdicts in words, rule by rule, and what the daemon does about them: pure.

`tapis-watchdog explain` prints `explain_lines`; the status page's job view shows the same
`Explanation`, so both say it in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchdog.durations import format_duration
from watchdog.rules.evaluate import evaluate
from watchdog.rules.plan import is_exempt, plan

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from watchdog.config.model import ExemptSettings
    from watchdog.jobs import Job
    from watchdog.rules.evaluate import CompiledRule, Verdict

__all__ = ["Explanation", "explain", "explain_lines"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every rule's verdict on one job at one time, and the conclusion (`=> ...`)."""

    job: Job
    verdicts: tuple[Verdict, ...]
    conclusion: str

    @property
    def header(self) -> str:
        job = self.job
        return f"job {job.uuid} ({job.name}) owner {job.owner} app {job.app_id} status {job.status}"


def explain(
    job: Job,
    rules: Sequence[CompiledRule],
    now: datetime,
    status_since: datetime | None,
    *,
    exempt: ExemptSettings,
    first_match: Mapping[str, datetime] | None = None,
) -> Explanation:
    """Evaluate the job and decide as the daemon does.

    `first_match` holds when each rule's grace period started; without it, the job is decided
    as one seen for the first time at `now`.
    """
    verdicts = evaluate(job, rules, now, status_since)
    decided = plan(verdicts, first_match or {}, now, exempt=is_exempt(job, exempt))
    grace = next((step for step in decided.steps if step.kind == "grace"), None)
    if decided.exempt:
        conclusion = "exempt: the watchdog never acts on this job"
    elif decided.winner is not None:
        conclusion = f"would cancel by rule {decided.winner.rule}"
    elif grace is not None and grace.verdict.grace is not None:
        conclusion = (
            f"would warn by rule {grace.verdict.rule}, and cancel after a grace of "
            f"{format_duration(grace.verdict.grace)} if it still matches; no cancel now"
        )
        if first_match and grace.grace_until is not None and grace.verdict.rule in first_match:
            conclusion = (
                f"grace period of rule {grace.verdict.rule} running: cancel at "
                f"{grace.grace_until:%Y-%m-%dT%H:%M:%SZ} if it still matches; no cancel now"
            )
    elif decided.outcome == "warn":
        conclusion = f"would warn by rule {decided.rule}; no cancel"
    else:
        conclusion = "no cancel"
    return Explanation(job=job, verdicts=tuple(verdicts), conclusion=conclusion)


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
    lines.append(f"  => {explanation.conclusion}")
    return lines
