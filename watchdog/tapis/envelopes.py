"""What a successful jobs answer must hold, per operation, or why it does not.

Tapis answers every jobs call with an envelope `{"status": "success", "message": ..., "result":
..., "version": ..., "metadata": ...}` (tapis-shared-java `TapisRestUtils.createSuccessResponse`);
the `result` is the operation's own response object (`RespCancelJob.result` is a
`JobCancelDisplay`, `RespJobStatus.result` has `status`, search gives a list). A 200 whose body
is not such an envelope (an empty object, no `result`, a proxy's page parsed as JSON) is no answer:
the client treats it like a lost one (`TapisUnavailableError` with `maybe_received`, logged as
`tapis_error`), so a read is retried and a cancel answered that way is followed as sent.

Each checker returns None for a usable envelope, else a short sentence for the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]


def _envelope(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(value, dict):
        return None, f"the answer is not a Tapis envelope (a JSON {type(value).__name__})"
    status = value.get("status")
    if status is not None and status != "success":
        return None, f"the answer's status is {str(status)[:40]!r}, not 'success'"
    if "result" not in value:
        return None, "the answer has no result"
    return value, None


def _result_of(kind: type, what: str) -> Check:
    def check(value: Any) -> str | None:
        envelope, problem = _envelope(value)
        if envelope is None:
            return problem
        if not isinstance(envelope["result"], kind):
            return f"the answer's result is not {what}"
        return None

    return check


search = _result_of(list, "a list of jobs")
job = _result_of(dict, "a job record")
history = _result_of(list, "a list of history events")
cancel = _result_of(dict, "a cancel acknowledgement")


def status(value: Any) -> str | None:
    """A status answer: its result holds the status as a string."""
    problem = _result_of(dict, "a job status")(value)
    if problem is None and not isinstance(value["result"].get("status"), str):
        return "the answer has no status"
    return problem


def event(value: Any) -> str | None:
    """A sendEvent answer: any envelope (its result is not used)."""
    return _envelope(value)[1]
