"""The cyclic garbage collector, paced by the polls instead of by allocations.

A poll of 100,000 jobs allocates a page's records at a time and keeps about a million objects
alive between polls (the jobs it reuses, the store's snapshot): left to itself, the collector
ran three full passes over all of them in every poll (2 s of a 4.5 s poll, measured by
bench/bench_poll.py). Job records form no reference cycles (tests/test_memory.py), so nothing
those passes could free is lost by not making them: after each good poll the young generations
are collected and what survives is frozen out of the collector's sight; once an hour everything
is unfrozen and collected in one full pass, so a cycle made anywhere else is freed within the
hour. Then, on glibc, the memory the poll's pages freed is handed back to the system
(`malloc_trim`): page bodies and record strings are large allocations that glibc otherwise keeps,
and RSS crept up by a few MB per poll without it.
"""

from __future__ import annotations

import ctypes
import gc
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

FULL_EVERY_S = 3600.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None on a C library without it."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class PollCollector:
    """Runs the collector between polls: `after_poll` once after each good poll."""

    def __init__(
        self, full_every_s: float = FULL_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._full_every_s = full_every_s
        self._clock = clock
        self._last_full = clock()
        self._trim = _malloc_trim()
        self.full_passes = 0

    def after_poll(self) -> None:
        """Collect the young generations and freeze the survivors; hourly, a full pass first."""
        now = self._clock()
        if now - self._last_full >= self._full_every_s:
            self._last_full = now
            self.full_passes += 1
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(1)
        gc.freeze()
        if self._trim is not None:
            self._trim(0)
