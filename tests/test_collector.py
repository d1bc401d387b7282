"""PollCollector: young generations and a freeze after each poll, a full pass once per period."""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING

import pytest

from watchdog.service.collector import PollCollector

if TYPE_CHECKING:
    from collections.abc import Iterator


class Node:
    def __init__(self) -> None:
        self.other: Node = self


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_survivors_are_frozen_and_a_full_pass_comes_once_per_period() -> None:
    now = [0.0]
    collector = PollCollector(full_every_s=60.0, clock=lambda: now[0])
    collector.after_poll()
    assert gc.get_freeze_count() > 0
    assert collector.full_passes == 0

    cycle = Node()
    alive = weakref.ref(cycle)
    gc.collect(1)  # it survives into the oldest generation, then becomes garbage
    del cycle
    collector.after_poll()  # frozen with the survivors: not freed yet
    assert alive() is not None

    now[0] = 59.0
    collector.after_poll()
    assert alive() is not None
    now[0] = 61.0
    collector.after_poll()  # the hourly pass thaws and frees it
    assert collector.full_passes == 1
    assert alive() is None
