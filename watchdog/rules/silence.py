"""Which silence spares a job from a rule's cancel: pure, no I/O, no clock (`now` is passed in).

A silence spares a job when every job selector it has holds (`uuids`: any of them; `owner`: exact;
`app`: a glob on appId, case-sensitive like the rules' globs) and, when it names a `rule`, only
for that rule. Budget cancels go through the same function with the budget's name as the rule, so
`silence add --rule NAME` can name a budget as well.

When several silences spare the same cancel, the one lasting longest is named: it is the one that
decides when the cancel can happen.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from watchdog.jobs import Job
    from watchdog.rules.plan import Step
    from watchdog.state.schema import Silence

__all__ = [
    "SilenceIndex",
    "SpareHint",
    "after_silence",
    "glob_matches_everything",
    "grace_warning",
    "silence_for",
    "silenced_skip",
    "silences_by_rule",
    "spare_command",
    "spares",
]


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


def glob_matches_everything(pattern: str) -> bool:
    """True for a glob that every string matches (`*`, `**`): it selects nothing."""
    return bool(pattern) and set(pattern) == {"*"}


def spares(silence: Silence, job: Job, rule: str, now: datetime) -> bool:
    """True when `silence` is active at `now` and spares `job` from `rule`'s cancel."""
    if not silence.active(now):
        return False
    if silence.rule is not None and silence.rule != rule:
        return False
    if silence.uuids and job.uuid not in silence.uuids:
        return False
    if silence.owner is not None and job.owner != silence.owner:
        return False
    return silence.app is None or _glob(silence.app).match(job.app_id) is not None


def silence_for(job: Job, rule: str, silences: Iterable[Silence], now: datetime) -> Silence | None:
    """The silence that spares `job` from `rule` at `now` (the longest-lasting one), or None."""
    found = [s for s in silences if spares(s, job, rule, now)]
    return max(found, key=lambda s: (s.until, s.id)) if found else None


def silences_by_rule(
    job: Job, rules: Iterable[str], silences: Sequence[Silence], now: datetime
) -> dict[str, Silence]:
    """Rule name → the silence sparing `job` from it at `now`, for the rules some silence spares
    (what `rules.plan.plan` takes as `silenced`)."""
    if not silences:
        return {}
    return SilenceIndex(silences, now).by_rule(job, rules)


class SilenceIndex:
    """The silences in force at one time, indexed by uuid and owner, for a whole poll.

    A poll asks, for every job with a matching rule, which silence spares it: looking only at
    the silences naming its uuid or its owner, and those with neither (an app glob, a rule
    alone), keeps that cheap however many silences name other jobs.
    """

    def __init__(self, silences: Iterable[Silence], now: datetime) -> None:
        self.now = now
        self._by_uuid: dict[str, list[Silence]] = {}
        self._by_owner: dict[str, list[Silence]] = {}
        self._rest: list[Silence] = []
        self._rest_for: dict[tuple[str, str], Silence | None] = {}
        for silence in silences:
            if not silence.active(now):
                continue
            if silence.uuids:
                for uuid in silence.uuids:
                    self._by_uuid.setdefault(uuid, []).append(silence)
            elif silence.owner is not None:
                self._by_owner.setdefault(silence.owner, []).append(silence)
            else:
                self._rest.append(silence)

    def by_rule(self, job: Job, rules: Iterable[str]) -> dict[str, Silence]:
        """Rule name → the silence sparing `job` from it, for the rules some silence spares."""
        named = [*self._by_uuid.get(job.uuid, ()), *self._by_owner.get(job.owner, ())]
        if not named and not self._rest:
            return {}
        found: dict[str, Silence] = {}
        for rule in rules:
            options = [s for s in (silence_for(job, rule, named, self.now),) if s is not None]
            if self._rest:
                # Without uuids or owner, only the app and the rule decide: once per pair.
                key = (job.app_id, rule)
                if key not in self._rest_for:
                    self._rest_for[key] = silence_for(job, rule, self._rest, self.now)
                rest = self._rest_for[key]
                if rest is not None:
                    options.append(rest)
            if options:
                found[rule] = max(options, key=lambda s: (s.until, s.id))
        return found


@dataclass(frozen=True, slots=True)
class SpareHint:
    """How to write the command that lets a warned job run (`spare_command`).

    `env_prefix` (e.g. `STATE_DIRECTORY=/var/lib/tapis-watchdog `) goes in front when the
    daemon's state store path comes from its environment, so the command finds the same store.
    """

    config_path: str
    duration: str = "2h"
    env_prefix: str = ""

    def command(self, job_uuid: str) -> str:
        return spare_command(
            job_uuid, self.config_path, duration=self.duration, env_prefix=self.env_prefix
        )


def spare_command(
    job_uuid: str, config_path: str, *, duration: str = "2h", env_prefix: str = ""
) -> str:
    """The command a person runs to let the job run: what every grace warning names."""
    return (
        f"{env_prefix}tapis-watchdog silence add {job_uuid} --for {duration} "
        f'--reason "..." -c {shlex.quote(config_path)}'
    )


def _at(at: datetime) -> str:
    return f"{at:%Y-%m-%dT%H:%M:%SZ}"


def _who(silence: Silence) -> str:
    return f"silence {silence.id} (by {silence.created_by}: {silence.reason})"


def grace_warning(step: Step, job_uuid: str, hint: SpareHint | None) -> tuple[str, dict[str, Any]]:
    """The reason and fields of a grace period's `job_warned`: when the cancel comes (after the
    grace, or after the silence sparing the job if that ends later) and how to spare the job."""
    cancel_at = step.cancel_at or step.grace_until
    assert cancel_at is not None
    # Shown to the second, rounded up: the cancel never comes before the time a warning names.
    if cancel_at.microsecond:
        cancel_at = cancel_at.replace(microsecond=0) + timedelta(seconds=1)
    reason = f"{step.verdict.reason}; cancel at {_at(cancel_at)} if still violating"
    if step.silence is not None:
        reason += f"; {_who(step.silence)} spares it until {_at(step.silence.until)}"
    fields: dict[str, Any] = {"cancel_at": _at(cancel_at)}
    if hint is not None:
        fields["spare_command"] = hint.command(job_uuid)
    return reason, fields


def silenced_skip(step: Step) -> tuple[str, dict[str, Any]]:
    """The reason and fields of the `job_cancel_skipped` (why: silenced) of a spared cancel."""
    silence = step.silence
    assert silence is not None
    reason = (
        f"{step.verdict.reason}; {_who(silence)} spares it until {_at(silence.until)}, "
        "then it is cancelled at the next poll if it still violates"
    )
    fields = {
        "silence_id": silence.id,
        "silenced_by": silence.created_by,
        "silence_reason": silence.reason,
        "silenced_until": _at(silence.until),
    }
    return reason, fields


def after_silence(reason: str, silence_id: str | None) -> str:
    """A cancel's reason when a silence had spared it until now: said so, with the silence."""
    if silence_id is None:
        return reason
    return f"{reason}; silence {silence_id} spared it and is over"
