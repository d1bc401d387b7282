"""Fault injection: latency, 5xx, 429, resets, hangs, malformed JSON, empty envelopes,
expired and short-lived tokens.

A fault applies to one endpoint (or `*`), fires with a probability and/or for a number of
requests ("the next 3 searches fail"), and draws from a seeded generator so runs repeat.
Latency faults add up with whatever else fires; of the other kinds, the first that fires wins.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

ENDPOINTS = frozenset(
    {"search", "list", "get", "status", "history", "cancel", "sendEvent", "tokens", "hide",
     "unhide", "*"}
)  # fmt: skip
KINDS = frozenset(
    {
        "latency",
        "error",
        "rate_limit",
        "reset",
        "hang",
        "malformed",
        "envelope",
        "token_expired",
        "token_ttl",
    }
)
_FIELDS = frozenset({"kind", "endpoint", "probability", "count", "status", "seconds", "message"})


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour.

    `seconds` is the added latency (`latency`), the hold time (`hang`), the `Retry-After` value
    (`rate_limit`) or the token lifetime (`token_ttl`). `status` is the HTTP code of `error`.
    `count` is how many requests it still affects (None: no limit). `malformed` and `envelope`
    answer after the request was served: the first cuts the JSON short, the second answers
    `200 {}` (valid JSON, no Tapis envelope), as a misbehaving proxy or gateway might.
    `token_expired` makes the token the request carries expire just then: this request and every
    later one with that token are refused as Tapis refuses an expired JWT (401
    `TAPIS_SECURITY_JWT_EXPIRED`); a new login's token works.
    """

    kind: str
    endpoint: str = "*"
    probability: float = 1.0
    count: int | None = None
    status: int = 500
    seconds: float = 1.0
    message: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            msg = f"kind: expected one of {sorted(KINDS)}, got {self.kind!r}"
            raise ValueError(msg)
        if self.endpoint not in ENDPOINTS:
            msg = f"endpoint: expected one of {sorted(ENDPOINTS)}, got {self.endpoint!r}"
            raise ValueError(msg)
        if not 0.0 <= self.probability <= 1.0:
            msg = f"probability: expected a number from 0 to 1, got {self.probability!r}"
            raise ValueError(msg)
        if self.count is not None and self.count < 1:
            msg = f"count: expected a positive integer, got {self.count!r}"
            raise ValueError(msg)
        if self.kind == "error" and not 500 <= self.status <= 599:
            msg = f"status: an error fault needs a 5xx status, got {self.status!r}"
            raise ValueError(msg)
        if self.seconds < 0:
            msg = f"seconds: expected a non-negative number, got {self.seconds!r}"
            raise ValueError(msg)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from fleet/control-API data; `seconds` may be a duration such as `2s`.

        Raises:
            ValueError: an unknown key or a bad value; the message names it.
        """
        from watchdog.durations import parse_duration  # noqa: PLC0415 - keep import graph flat

        unknown = set(data) - _FIELDS
        if unknown:
            msg = f"unknown key(s) {sorted(unknown)}; expected some of {sorted(_FIELDS)}"
            raise ValueError(msg)
        if "kind" not in data:
            msg = "kind: required"
            raise ValueError(msg)
        kwargs = dict(data)
        seconds = kwargs.get("seconds")
        if isinstance(seconds, str):
            kwargs["seconds"] = parse_duration(seconds).total_seconds()
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc


class FaultPlan:
    """The active faults and the seeded generator that decides when they fire. Thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible test faults, not security
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> tuple[Fault, ...]:
        with self._lock:
            return tuple(self._faults)

    def draw(self, endpoint: str) -> tuple[float, Fault | None]:
        """Decide the faults of one request: total added latency, and the fault that fires."""
        latency = 0.0
        fired: Fault | None = None
        with self._lock:
            kept: list[Fault] = []
            for fault in self._faults:
                applies = fault.endpoint in {"*", endpoint}
                if fault.kind == "token_ttl":
                    applies = applies and endpoint == "tokens"
                if not applies or (fired is not None and fault.kind != "latency"):
                    kept.append(fault)
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    kept.append(fault)
                    continue
                if fault.kind == "latency":
                    latency += fault.seconds
                else:
                    fired = fault
                if fault.count is None:
                    kept.append(fault)
                elif fault.count > 1:
                    kept.append(replace(fault, count=fault.count - 1))
            self._faults = kept
        return latency, fired
