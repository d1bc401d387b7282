"""From a job's verdicts to what the watchdog does about it: pure, no I/O, no clock.

The daemon (through `rules.poll_plan`), `explain` and the offline rule tests (`tools/testrules.py`)
all call `plan`, so a rule test proves exactly what the daemon would do:

- a matching `warn` rule warns;
- a matching `cancel` rule with a grace period warns until `first_match + grace`, then is due;
- the first due `cancel` rule in file order wins; a per-rule dry-run rule never takes the place of
  a rule that really acts (it is a shadow: logged as a would-be cancel);
- an exempt job is never acted on: never cancelled, never warned (its matches are only logged);
- a silenced cancel (`rules.silence`: a time-boxed "let this one run") is skipped, and never takes
  the place of a rule that really acts; its grace period keeps running, so a warning says the
  cancel comes when both the grace and the silence are over, and a cancel due when the silence
  ends happens at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from watchdog.config.model import ExemptSettings
    from watchdog.jobs import Job
    from watchdog.rules.evaluate import Verdict
    from watchdog.state.schema import Silence

StepKind = Literal["warn", "grace", "cancel", "shadow", "matched", "silenced"]


@dataclass(frozen=True, slots=True)
class Step:
    """What one matching rule leads to for one job."""

    verdict: Verdict
    kind: StepKind
    grace_until: datetime | None = None
    silence: Silence | None = None
    """The silence sparing this cancel (`silenced`, or a `grace` step under a silence)."""

    @property
    def cancel_at(self) -> datetime | None:
        """When a `grace` step's cancel happens if the job still violates: the end of the grace
        period, or of the silence sparing it if that is later."""
        if self.grace_until is None:
            return None
        if self.silence is not None and self.silence.until > self.grace_until:
            return self.silence.until
        return self.grace_until


@dataclass(frozen=True, slots=True)
class Plan:
    """Every matching rule's step, and the one cancel (if any) to carry out."""

    steps: tuple[Step, ...]
    winner: Verdict | None
    exempt: bool

    @property
    def silenced(self) -> tuple[Step, ...]:
        """The cancels a silence spares now."""
        return tuple(step for step in self.steps if step.kind == "silenced")

    @property
    def outcome(self) -> Literal["cancel", "warn", "none"]:
        """The verdict a person expects: `cancel`, `warn` or `none`."""
        if self.winner is not None and not self.exempt:
            return "cancel"
        if any(step.kind in {"warn", "grace"} for step in self.steps):
            return "warn"
        return "none"

    @property
    def rule(self) -> str | None:
        """The rule behind the outcome."""
        if self.outcome == "cancel" and self.winner is not None:
            return self.winner.rule
        for step in self.steps:
            if step.kind in {"warn", "grace"}:
                return step.verdict.rule
        return None


def is_exempt(job: Job, exempt: ExemptSettings) -> bool:
    """True when `safety.exempt` names the job's uuid, its owner, or one of its tags."""
    return (
        job.uuid in exempt.uuids
        or job.owner in exempt.owners
        or any(tag in exempt.tags for tag in job.tags)
    )


def plan(
    verdicts: Sequence[Verdict],
    first_match: Mapping[str, datetime],
    now: datetime,
    *,
    exempt: bool = False,
    silenced: Mapping[str, Silence] | None = None,
) -> Plan:
    """Decide for one job.

    Args:
        verdicts: `rules.evaluate`'s verdicts, in file order.
        first_match: when each rule first matched this job (absent: it matches for the first
            time now).
        now: the evaluation time.
        exempt: the job is exempt (tags, owners or uuids of `safety.exempt`): never acted on.
        silenced: rule name → the active silence sparing this job from it
            (`rules.silence.silences_by_rule`); an exempt job needs none.
    """
    silenced = {} if exempt or silenced is None else silenced
    steps: list[Step] = []
    winner: Verdict | None = None
    for verdict in verdicts:
        if not verdict.matched:
            continue
        if verdict.action == "warn":
            # Exempt means never acted on: no warning into the job's history either.
            steps.append(Step(verdict, "matched" if exempt else "warn"))
            continue
        # An exempt job is never cancelled, so it is never warned that it will be: its
        # cancel rule is due at once, and the cancel is skipped as exempt.
        silence = silenced.get(verdict.rule)
        if verdict.grace is not None and not exempt:
            until = first_match.get(verdict.rule, now) + verdict.grace
            if now < until:
                steps.append(Step(verdict, "grace", until, silence))
                continue
        if verdict.dry_run:
            steps.append(Step(verdict, "shadow"))
        elif silence is not None:
            steps.append(Step(verdict, "silenced", silence=silence))
        elif winner is None:
            winner = verdict
            steps.append(Step(verdict, "cancel"))
        else:
            steps.append(Step(verdict, "matched"))
    return Plan(steps=tuple(steps), winner=winner, exempt=exempt)
