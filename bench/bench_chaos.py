"""Chaos at full size: the 27-cell fault matrix and a long seeded SIGKILL campaign, with figures.

    .venv/bin/python bench/bench_chaos.py [--kills 100] [--seed 7] [--runaways 12]

Prints, per fault cell, the offenders cancelled within two poll intervals of the fault ending,
the time from the end of the fault to the last cancel, the most cancels any job received, and
failed calls against `tapis_error` events; then the campaign's figures: kills, offenders
cancelled and confirmed, the most cancels one job received, duplicate warnings, sendEvents and
notifications, `PRAGMA integrity_check`, and how long the clean run took to finish the work.
The suite runs the same code small (tests/test_chaos.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chaos_harness import run_campaign, run_matrix


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runaways", type=int, default=12)
    parser.add_argument("--skip-matrix", action="store_true")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_matrix:
            started = time.monotonic()
            cells = anyio.run(run_matrix, Path(tmp) / "matrix")
            print(f"fault matrix: {len(cells)} cells in {time.monotonic() - started:.1f} s")
            print(
                f"{'fault':10} {'endpoint':8} {'in time':>8} {'confirmed':>9} "
                f"{'heal s':>7} {'max cancels':>11} {'failed':>6} {'logged':>6}  ok"
            )
            for c in cells:
                heal = "-" if c.after_fault_s is None else f"{c.after_fault_s:.2f}"
                print(
                    f"{c.fault:10} {c.endpoint:8} {c.cancelled_in_time:>4}/{c.offenders:<3} "
                    f"{c.confirmed:>5}/{c.offenders:<3} {heal:>7} {c.max_cancels:>11} "
                    f"{c.faulted:>6} {c.logged:>6}  {'yes' if c.ok else 'NO'}"
                )
                ok = ok and c.ok
        started = time.monotonic()
        result = run_campaign(
            Path(tmp) / "campaign",
            kills=args.kills,
            seed=args.seed,
            runaways=args.runaways,
            stuck=max(1, args.runaways // 2),
            healthy=args.runaways // 2,
        )
        print(f"\nSIGKILL campaign: seed {args.seed}, {time.monotonic() - started:.0f} s")
        for key, value in vars(result).items():
            if key != "lines":
                print(f"  {key:24} {value}")
        print(f"  {'ok':24} {result.ok}")
        ok = ok and result.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
