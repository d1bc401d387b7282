"""The `safety` section: dry run, the circuit breaker, verifying a cancel (and its one re-send),
the longest silence, exemptions; and its defaults, which follow what the user wrote beside them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from watchdog.config.fields import (
    Flag,
    PositiveDuration,
    PositiveInt,
    StrictModel,
    TextList,
    duration,
    problem,
    show,
)

__all__ = [
    "DEFAULT_MAX_PER_HOUR",
    "DEFAULT_RESEND_AFTER",
    "DEFAULT_VERIFY_TIMEOUT",
    "ExemptSettings",
    "SafetySettings",
]


class ExemptSettings(StrictModel):
    """Jobs that are never acted on, by exact tag, owner or UUID."""

    tags: TextList = ()
    owners: TextList = ()
    uuids: TextList = ()


DEFAULT_RESEND_AFTER = timedelta(minutes=1)
DEFAULT_VERIFY_TIMEOUT = timedelta(minutes=15)
DEFAULT_MAX_PER_HOUR = 50


class SafetySettings(StrictModel):
    """Dry run, the circuit breaker, cancel verification (and its one re-send), the longest
    silence `tapis-watchdog silence add` accepts, exemptions."""

    dry_run: Flag = False
    max_cancels_per_poll: PositiveInt = 10
    max_cancels_per_hour: PositiveInt = DEFAULT_MAX_PER_HOUR
    verify_timeout: PositiveDuration = DEFAULT_VERIFY_TIMEOUT
    resend_after: PositiveDuration = DEFAULT_RESEND_AFTER
    max_silence: PositiveDuration = timedelta(days=7)
    exempt: ExemptSettings = ExemptSettings()

    @model_validator(mode="before")
    @classmethod
    def _defaults_follow_what_was_written(cls, data: Any) -> Any:
        """A default never conflicts with a value the user wrote beside it: `resend_after`
        follows a short `verify_timeout` (half of it), `verify_timeout` a long `resend_after`
        (twice it), `max_cancels_per_hour` a large `max_cancels_per_poll` (at least as many)."""
        if not isinstance(data, dict):
            return data
        derived: dict[str, Any] = {}
        try:
            if "resend_after" not in data and "verify_timeout" in data:
                verify = duration(data["verify_timeout"])
                if timedelta(0) < verify <= 2 * DEFAULT_RESEND_AFTER:
                    derived["resend_after"] = verify / 2
            if "verify_timeout" not in data and "resend_after" in data:
                resend = duration(data["resend_after"])
                if resend >= DEFAULT_VERIFY_TIMEOUT:
                    derived["verify_timeout"] = 2 * resend
        except PydanticCustomError:
            return data  # the field's own validator says what is wrong with it
        per_poll = data.get("max_cancels_per_poll")
        if (
            "max_cancels_per_hour" not in data
            and isinstance(per_poll, int)
            and not isinstance(per_poll, bool)
            and per_poll > DEFAULT_MAX_PER_HOUR
        ):
            derived["max_cancels_per_hour"] = per_poll
        return {**data, **derived} if derived else data

    @model_validator(mode="after")
    def _check_resend(self) -> SafetySettings:
        if self.resend_after >= self.verify_timeout:
            raise problem(
                f"must be shorter than verify_timeout ({show(self.verify_timeout)}), "
                f"got {show(self.resend_after)}",
                at=("resend_after",),
            )
        return self
