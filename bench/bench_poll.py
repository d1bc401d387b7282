"""Benchmark one complete poll against the simulator, beside the floor a bare HTTP client sets.

The simulator runs as a subprocess (`tapis-watchdog sim --fleet F`, N active jobs of one user),
and so does each measurement, so that CPU time and peak RSS belong to the client alone. Every run
asks for the very same pages: the statuses, list type, page size and `select` that the daemon
derives from `config.example.yaml` (the select is `fields_needed` of its rules, so the large
`fileInputs`/`parameterSet` strings travel too).

- `poll`: `poll_jobs` called exactly as `watchdog/daemon.py` calls it (the client built from the
  configuration, the default key ranges, an `on_malformed` callback);
- `floor`: the same keyset pages fetched one after another with `requests` + `json.loads`;
- `floor xN`: when the poll split the key space into N ranges, the floor fetches the very same
  ranges with N threads (the ratio of `poll` to it is the second ratio column).

The targets are about the `poll` row: `x floor` at most 1.5 at 10,000 jobs, the 100,000-job wall
well inside the 60 s poll interval, peak RSS at most 500 MB, calls equal to pages.

Usage: .venv/bin/python bench/bench_poll.py [--sizes 1000,10000,100000] [--repeat 3]
       [--page-size N (default: the configuration's)] [--config config.example.yaml]
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watchdog.config.model import Config

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "alice", "alice-password"


def write_fleet(jobs: int, seed: int, directory: Path) -> Path:
    """A fleet of `jobs` active jobs of one user, with realistic records (generate_fleet)."""
    from watchdog.jobs import ACTIVE_STATUSES  # noqa: PLC0415
    from watchdog.sim import generate_fleet  # noqa: PLC0415

    rng = random.Random(seed)
    records = []
    for job in generate_fleet(jobs, seed).jobs:
        record = {k: v for k, v in job.items() if k not in {"shared_with", "ended", "condition"}}
        record["owner"] = USER
        record["status"] = rng.choice(ACTIVE_STATUSES)
        records.append(record)
    path = directory / f"fleet-{jobs}.json"
    path.write_text(json.dumps({"users": {USER: PASSWORD}, "jobs": records}))
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


def run_child(mode: str, info: dict[str, Any], args: argparse.Namespace, **extra: Any) -> Any:
    command = [sys.executable, __file__, "--child", mode, "--info", json.dumps(info)]
    command += ["--config", str(args.config)]
    if args.page_size:
        command += ["--page-size", str(args.page_size)]
    for key, value in extra.items():
        command += [f"--{key}", str(value)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_run(mode: str, info: dict[str, Any], args: argparse.Namespace, **extra: Any) -> Any:
    """The run with the median wall time of `--repeat` runs (shared machines are noisy)."""
    results = sorted(
        (run_child(mode, info, args, **extra) for _ in range(args.repeat)),
        key=lambda r: r["wall"],
    )
    return results[len(results) // 2]


def peak_rss_mb() -> float:
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak over exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children ---------------------------------------------------------------------------------


def daemon_config(info: dict[str, Any], path: Path, page_size: int | None) -> Config:
    """The configuration file as the daemon loads it, pointed at the simulator."""
    from watchdog.config.model import load_config  # noqa: PLC0415

    env = {"TAPIS_USERNAME": info["username"], "TAPIS_PASSWORD": info["password"]}
    config = load_config(path, env=env)
    tapis = config.tapis.model_copy(
        update={"base_url": info["base_url"], "tenant_id": info["tenant_id"]}
    )
    poll = config.poll.model_copy(update={"page_size": page_size or config.poll.page_size})
    return config.model_copy(update={"tapis": tapis, "poll": poll})


def poll_select(config: Config) -> tuple[str, ...]:
    """The `select` the daemon's poll sends (the poll puts its key fields first)."""
    from watchdog.poll.scan import select_for  # noqa: PLC0415
    from watchdog.rules.evaluate import compile_rules, fields_needed  # noqa: PLC0415

    return select_for(fields_needed(compile_rules(config.rules)))


def child_poll(info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import anyio  # noqa: PLC0415

    from watchdog.poll.scan import poll_jobs  # noqa: PLC0415
    from watchdog.rules.evaluate import compile_rules, fields_needed  # noqa: PLC0415
    from watchdog.tapis.client import TapisClient  # noqa: PLC0415

    config = daemon_config(info, args.config, args.page_size)
    rules = compile_rules(config.rules)
    malformed: list[str | None] = []
    errors: list[Any] = []

    async def main() -> dict[str, Any]:
        # As build_daemon wires it; Prometheus observation of each call is left out.
        async with TapisClient(config.tapis, on_error=lambda *e: errors.append(e)) as client:
            await client.login()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            # As Daemon.poll_once calls it.
            result = await poll_jobs(
                client,
                statuses=config.poll.statuses,
                list_type=config.poll.list_type,
                page_size=config.poll.page_size,
                fields=fields_needed(rules),
                on_malformed=lambda uuid, _detail: malformed.append(uuid),
            )
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return {
            "jobs": len(result.jobs),
            "pages": result.pages,
            "calls": result.api_calls,
            "ranges": result.ranges,
            "wall": wall,
            "cpu": cpu,
            "rss": peak_rss_mb(),
            "malformed": result.malformed,
        }

    return anyio.run(main)


def child_floor(info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import requests  # noqa: PLC0415

    from watchdog.poll.scan import ORDER_BY, split_after  # noqa: PLC0415 - the poll's own key ranges

    config = daemon_config(info, args.config, args.page_size)
    page_size, ranges = config.poll.page_size, args.ranges
    base = info["base_url"].rstrip("/")
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=max(10, ranges)))
    login = session.post(
        f"{base}/v3/oauth2/tokens",
        json={"username": info["username"], "password": info["password"], "grant_type": "password"},
        timeout=60,
    )
    token = login.json()["result"]["access_token"]["access_token"]
    headers = {"X-Tapis-Token": token}
    common = {
        "status.in": ",".join(config.poll.statuses),
        "select": ",".join(poll_select(config)),
        "limit": str(page_size),
        "orderBy": ORDER_BY,
        "listType": config.poll.list_type,
    }
    counts = {"pages": 0, "jobs": 0}

    def page(extra: dict[str, str]) -> list[dict[str, Any]]:
        resp = session.get(
            f"{base}/v3/jobs/search", params={**common, **extra}, headers=headers, timeout=60
        )
        resp.raise_for_status()
        records: list[dict[str, Any]] = json.loads(resp.content)["result"]
        counts["pages"] += 1
        counts["jobs"] += len(records)
        return records

    def scan(start_after: str | None, gte: str | None, lt: str | None) -> None:
        while True:
            extra = {"startAfter": start_after, "uuid.gte": gte, "uuid.lt": lt}
            records = page({k: v for k, v in extra.items() if v})
            if len(records) < page_size:
                return
            start_after = records[-1]["uuid"]

    cpu0, wall0 = time.process_time(), time.perf_counter()
    first = page({"computeTotal": "true"})
    if len(first) == page_size:
        parts = split_after(first[-1]["uuid"], ranges)
        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(lambda r: scan(r.start_after, r.gte, r.lt), parts))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "jobs": counts["jobs"],
        "pages": counts["pages"],
        "calls": counts["pages"],
        "ranges": ranges,
        "wall": wall,
        "cpu": cpu,
        "rss": peak_rss_mb(),
        "malformed": 0,
    }


# -- the table --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--config", type=Path, default=ROOT / "config.example.yaml")
    parser.add_argument("--page-size", type=int, help="default: the configuration's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--child", choices=["poll", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    parser.add_argument("--ranges", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        fn = child_poll if args.child == "poll" else child_floor
        print(json.dumps(fn(json.loads(args.info), args)))
        return

    header = (
        f"{'jobs':>7} {'run':<9} {'ranges':>6} {'active':>7} {'pages':>6} {'calls':>6} "
        f"{'wall s':>7} {'cpu s':>6} {'rss MB':>6} {'x floor':>7} {'x same-ranges floor':>19}"
    )
    print(header)
    print("-" * len(header))
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            proc, info = start_simulator(write_fleet(size, args.seed, Path(tmp)))
        try:
            poll = median_run("poll", info, args)
            floor = median_run("floor", info, args, ranges=1)
            runs = [("floor", floor), ("poll", poll)]
            same = floor
            if poll["ranges"] > 1:
                same = median_run("floor", info, args, ranges=poll["ranges"])
                runs.insert(1, (f"floor x{poll['ranges']}", same))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        for name, r in runs:
            ratio = r["wall"] / floor["wall"] if floor["wall"] else math.nan
            same_ratio = f"{r['wall'] / same['wall']:>19.2f}" if name == "poll" else f"{'':>19}"
            print(
                f"{size:>7} {name:<9} {r['ranges']:>6} {r['jobs']:>7} {r['pages']:>6} "
                f"{r['calls']:>6} {r['wall']:>7.2f} {r['cpu']:>6.2f} {r['rss']:>6.0f} "
                f"{ratio:>7.2f} {same_ratio}"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
