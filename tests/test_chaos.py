"""The chaos tests, small: the 27-cell fault matrix and a short seeded SIGKILL campaign.

The full-size runs, with their figures, are `bench/bench_chaos.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from chaos_harness import run_campaign, run_matrix

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.anyio
async def test_every_fault_cell_heals_within_two_polls_and_every_failed_call_is_logged(
    tmp_path: Path,
) -> None:
    results = await run_matrix(tmp_path)
    assert len(results) == 27
    bad = [r for r in results if not r.ok]
    assert not bad, "\n".join(str(r) for r in bad)


# The campaign bounds each of its own waits (every kill, the clean run's 60 s deadline); the
# per-test limit sits above their sum so a slow machine gets the campaign's own verdict.
@pytest.mark.timeout(300)
def test_a_seeded_sigkill_campaign_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    result = run_campaign(tmp_path, kills=6, seed=20261202)
    summary = {k: v for k, v in vars(result).items() if k != "lines"}
    assert result.ok, summary
    assert result.offenders == 9 + 6
