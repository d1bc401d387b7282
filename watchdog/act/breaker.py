"""The circuit breaker: how many of one poll's due cancels may be sent.

Two limits from the `safety` section bound what a bad rule can do: more cancels due in one poll
than `max_cancels_per_poll` sends none of them, and no more than `max_cancels_per_hour` are sent in
any rolling hour. Both the cancels sent and whether the circuit is open live in the state store, so
the hourly count and the once-per-change `circuit_opened` / `circuit_closed` events hold across
restarts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from watchdog.config.model import SafetySettings
    from watchdog.events import EventLog
    from watchdog.state.store import StateStore

BREAKER_META_KEY = "circuit_open"
HOUR = timedelta(hours=1)


def allowed_cancels(
    due: int, now: datetime, *, safety: SafetySettings, store: StateStore, events: EventLog
) -> int:
    """How many of this poll's `due` cancels may be sent; opens or closes the circuit."""
    was_open = store.get_meta(BREAKER_META_KEY) == "1"
    per_poll = safety.max_cancels_per_poll
    left_this_hour = max(0, safety.max_cancels_per_hour - store.cancels_sent_since(now - HOUR))
    if due > per_poll:
        allowed = 0
        reason = f"{due} cancels due this poll, over max_cancels_per_poll {per_poll}"
    elif due > left_this_hour:
        allowed = left_this_hour
        reason = (
            f"{due} cancels due, only {left_this_hour} left of max_cancels_per_hour "
            f"{safety.max_cancels_per_hour}"
        )
    else:
        allowed = due
        reason = ""
    if allowed < due and not was_open:
        store.set_meta(BREAKER_META_KEY, "1")
        events.circuit_opened(reason=reason, due=due, allowed=allowed)
    elif allowed == due and was_open:
        store.set_meta(BREAKER_META_KEY, "0")
        events.circuit_closed(reason=f"{due} cancels due, within the limits")
    return allowed
