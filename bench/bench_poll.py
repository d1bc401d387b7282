"""Benchmark one complete poll against the simulator, beside the floor a bare HTTP client sets.

The simulator runs as a subprocess (`tapis-watchdog sim --fleet F`, N active jobs of one user),
and so does each measurement, so that CPU time and peak RSS belong to the client alone:

- `floor`: the same keyset pages fetched with `requests` + `json.loads`, one after another;
- `floor xN`: the same, with the poll's disjoint uuid ranges fetched by N threads;
- `poll 1`: `poll_jobs` scanning one range (sequential pages, through tapipy);
- `poll`: `poll_jobs` as the daemon runs it (concurrent ranges).

Usage: .venv/bin/python bench/bench_poll.py [--sizes 1000,10000,100000] [--page-size 500]
       [--ranges 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def write_fleet(jobs: int, seed: int, directory: Path) -> Path:
    """A fleet of `jobs` active jobs of one user, with realistic records (generate_fleet)."""
    from watchdog.jobs import ACTIVE_STATUSES  # noqa: PLC0415
    from watchdog.sim import generate_fleet  # noqa: PLC0415

    rng = random.Random(seed)
    records = []
    for job in generate_fleet(jobs, seed).jobs:
        record = {k: v for k, v in job.items() if k not in {"shared_with", "ended", "condition"}}
        record["owner"] = "alice"
        record["status"] = rng.choice(ACTIVE_STATUSES)
        records.append(record)
    path = directory / f"fleet-{jobs}.json"
    path.write_text(json.dumps({"users": {"alice": "alice-password"}, "jobs": records}))
    return path


def start_simulator(fleet: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdog", "sim", "--fleet", str(fleet)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("the simulator did not start")
    return proc, json.loads(line)


def run_child(
    mode: str, info: dict[str, Any], args: argparse.Namespace, ranges: int
) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--info",
            json.dumps(info),
            "--page-size",
            str(args.page_size),
            "--ranges",
            str(ranges),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_run(
    mode: str, info: dict[str, Any], args: argparse.Namespace, ranges: int
) -> dict[str, Any]:
    """The run with the median wall time of `--repeat` runs (shared machines are noisy)."""
    results = sorted(
        (run_child(mode, info, args, ranges) for _ in range(args.repeat)), key=lambda r: r["wall"]
    )
    return results[len(results) // 2]


def peak_rss_mb() -> float:
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak over exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children ---------------------------------------------------------------------------------


def child_poll(info: dict[str, Any], page_size: int, ranges: int) -> dict[str, Any]:
    import anyio  # noqa: PLC0415
    from pydantic import SecretStr  # noqa: PLC0415

    from watchdog.jobs import ACTIVE_STATUSES, SUMMARY_FIELDS  # noqa: PLC0415
    from watchdog.poll import poll_jobs  # noqa: PLC0415
    from watchdog.tapis import TapisClient  # noqa: PLC0415

    class Settings:
        base_url = info["base_url"]
        tenant_id = info["tenant_id"]
        username = info["username"]
        password = SecretStr(info["password"])
        access_token = None
        client_id = None
        client_key = None
        timeout = timedelta(seconds=60)
        max_concurrency = 8

    async def main() -> dict[str, Any]:
        async with TapisClient(Settings()) as client:
            await client.login()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            result = await poll_jobs(
                client,
                statuses=ACTIVE_STATUSES,
                list_type="MY_JOBS",
                page_size=page_size,
                fields=SUMMARY_FIELDS,
                max_ranges=ranges,
            )
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return {
            "jobs": len(result.jobs),
            "pages": result.pages,
            "calls": result.api_calls,
            "wall": wall,
            "cpu": cpu,
            "rss": peak_rss_mb(),
            "malformed": result.malformed,
        }

    return anyio.run(main)


def child_floor(info: dict[str, Any], page_size: int, ranges: int) -> dict[str, Any]:
    import requests  # noqa: PLC0415

    from watchdog.jobs import ACTIVE_STATUSES, SUMMARY_FIELDS  # noqa: PLC0415
    from watchdog.poll import _split_after  # noqa: PLC0415 - the poll's own key ranges

    base = info["base_url"].rstrip("/")
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, ranges))
    session.mount("http://", adapter)
    login = session.post(
        f"{base}/v3/oauth2/tokens",
        json={"username": info["username"], "password": info["password"], "grant_type": "password"},
        timeout=60,
    )
    token = login.json()["result"]["access_token"]["access_token"]
    headers = {"X-Tapis-Token": token}
    common = {
        "status.in": ",".join(ACTIVE_STATUSES),
        "select": ",".join(dict.fromkeys(("uuid", "status", *SUMMARY_FIELDS))),
        "limit": str(page_size),
        "orderBy": "uuid(asc)",
        "listType": "MY_JOBS",
    }
    counts = {"pages": 0, "jobs": 0}

    def page(extra: dict[str, str]) -> list[dict[str, Any]]:
        resp = session.get(
            f"{base}/v3/jobs/search", params={**common, **extra}, headers=headers, timeout=60
        )
        resp.raise_for_status()
        body = json.loads(resp.content)
        records: list[dict[str, Any]] = body["result"]
        counts["pages"] += 1
        counts["jobs"] += len(records)
        counts["total"] = (body.get("metadata") or {}).get("totalCount", -1)
        return records

    def scan(start_after: str | None, gte: str | None, lt: str | None) -> None:
        while True:
            extra = {}
            if start_after:
                extra["startAfter"] = start_after
            if gte:
                extra["uuid.gte"] = gte
            if lt:
                extra["uuid.lt"] = lt
            records = page(extra)
            if len(records) < page_size:
                return
            start_after = records[-1]["uuid"]

    cpu0, wall0 = time.process_time(), time.perf_counter()
    first = page({"computeTotal": "true"})
    if len(first) == page_size:
        remaining = max(0, counts["total"] - len(first))
        wanted = max(1, min(ranges, math.ceil(remaining / page_size)))
        if wanted > 1:
            parts = _split_after(first[-1]["uuid"], wanted)
            with ThreadPoolExecutor(len(parts)) as pool:
                list(pool.map(lambda r: scan(r.start_after, r.gte, r.lt), parts))
        else:
            scan(first[-1]["uuid"], None, None)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "jobs": counts["jobs"],
        "pages": counts["pages"],
        "calls": counts["pages"],
        "wall": wall,
        "cpu": cpu,
        "rss": peak_rss_mb(),
        "malformed": 0,
    }


# -- the table --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ranges", type=int, default=8, help="concurrent key ranges")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--child", choices=["poll", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        info = json.loads(args.info)
        fn = child_poll if args.child == "poll" else child_floor
        print(json.dumps(fn(info, args.page_size, args.ranges)))
        return

    header = (
        f"{'jobs':>7} {'run':<10} {'active':>7} {'pages':>6} {'calls':>6} "
        f"{'wall s':>8} {'cpu s':>7} {'rss MB':>7} {'x floor':>8}"
    )
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            proc, info = start_simulator(write_fleet(size, args.seed, Path(tmp)))
        try:
            runs = [
                ("floor", median_run("floor", info, args, 1)),
                ("poll 1", median_run("poll", info, args, 1)),
                (f"floor x{args.ranges}", median_run("floor", info, args, args.ranges)),
                ("poll", median_run("poll", info, args, args.ranges)),
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        floors = {"floor": runs[0][1]["wall"], "poll 1": runs[0][1]["wall"]}
        floors["poll"] = floors[f"floor x{args.ranges}"] = runs[2][1]["wall"]
        for name, r in runs:
            ratio = r["wall"] / floors[name] if floors[name] else math.nan
            print(
                f"{size:>7} {name:<10} {r['jobs']:>7} {r['pages']:>6} {r['calls']:>6} "
                f"{r['wall']:>8.2f} {r['cpu']:>7.2f} {r['rss']:>7.0f} {ratio:>8.2f}"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
