"""The circuit breaker: how many of one poll's due cancels may be sent. Pure: no I/O, no clock.

Two limits from the `safety` section bound what a bad rule can do: more cancels due in one poll
than `max_cancels_per_poll` sends none of them, and no more than `max_cancels_per_hour` are sent in
any rolling hour. The state it decides from (was the circuit open, how many cancels went out in the
last hour) comes from the state store's snapshot, and the state it leaves goes back there, so the
hourly count and the once-per-change `circuit_opened` / `circuit_closed` events hold across
restarts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BreakerDecision:
    """How many of `due` cancels may go out, and whether that changes the circuit's state."""

    due: int
    allowed: int
    reason: str
    was_open: bool

    @property
    def opens(self) -> bool:
        """The circuit opens now (`circuit_opened`)."""
        return self.allowed < self.due and not self.was_open

    @property
    def closes(self) -> bool:
        """The circuit closes now (`circuit_closed`)."""
        return self.allowed == self.due and self.was_open


def decide_breaker(
    due: int,
    *,
    was_open: bool,
    sent_last_hour: int,
    max_per_poll: int,
    max_per_hour: int,
) -> BreakerDecision:
    """How many of this poll's `due` cancels may be sent, and why not all of them."""
    left_this_hour = max(0, max_per_hour - sent_last_hour)
    if due > max_per_poll:
        allowed = 0
        reason = f"{due} cancels due this poll, over max_cancels_per_poll {max_per_poll}"
    elif due > left_this_hour:
        allowed = left_this_hour
        reason = (
            f"{due} cancels due, only {left_this_hour} left of max_cancels_per_hour {max_per_hour}"
        )
    elif was_open:
        allowed = due
        reason = f"{due} cancels due, within the limits"
    else:
        allowed = due
        reason = ""
    return BreakerDecision(due=due, allowed=allowed, reason=reason, was_open=was_open)
