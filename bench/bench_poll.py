"""What a poll costs the user: the whole poll, the listing alone, and the floor, in one run.

For each fleet size and each server, the server runs as a subprocess, and so does every
measurement, so that CPU time, bytes written and RSS belong to the client alone:

- servers: `sim` is the built-in simulator (`tapis-watchdog sim`), which filters and renders every
  page itself; `fast` is `bench/fast_tapis.py`, the simulator with job searches answered from
  records pre-rendered in memory (keyset by the `uuid.gt` condition), as fast as an index.
- `daemon`: the daemon built by `build_daemon` from the configuration (`config.example.yaml` by
  default, its rules and metrics; dry run, so the fleet never changes and polls after the first
  are the steady state), logged in, then `Daemon.poll_once` called `--polls` times in a row.
  Per poll: `poll_completed.duration_s` (the whole poll, what a user waits for), the time spent
  inside `poll_jobs` (the listing alone), CPU time of the process, bytes it wrote (`wchar` of
  /proc/self/io while the log goes to memory: what SQLite wrote), RSS after the poll, API calls.
  Poll 1 is the cold one (it records every match and may fetch job histories for its status
  clocks); polls 2.. are the steady state.
- `floor`: the search requests of the daemon's last poll, read from the server's request log and
  replayed with a bare `requests` session and `json.loads`, with the poll's concurrency (one
  thread per key range; none when the poll used one range); then replayed again with
  `orjson.loads` (what the daemon parses with), the stricter floor of the last column.

Each row is the median of `--repeat` runs (daemon and floor alternate, so both see the same
machine), with the spread (min-max) in brackets. Targets (issue "A poll that costs what its pages
cost"): against `fast`, the whole steady poll at most 1.5x the floor at 10,000 and 100,000 jobs;
at most 30 us CPU per job per steady poll; under 16 KiB written by a poll where nothing changed;
peak RSS at most 200 MB at 100,000 jobs and flat from poll 1 to the last; API calls = pages
(+ a status check and a cancel per offender, none in dry run).

Usage: .venv/bin/python bench/bench_poll.py [--sizes 10000,100000] [--servers sim,fast]
       [--repeat 3] [--polls 10] [--config config.example.yaml]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "alice", "alice-password"
_CURSOR_PARAMS = {"uuid.gt", "startAfter", "computeTotal"}


def write_fleet(jobs: int, seed: int, directory: Path) -> Path:
    """`jobs` active jobs of one user, drawn like generate_fleet's (a terminal one becomes
    RUNNING or QUEUED, so every job is watched)."""
    from watchdog.jobs import ACTIVE_STATUSES  # noqa: PLC0415
    from watchdog.sim import generate_fleet  # noqa: PLC0415

    rng = random.Random(seed)
    records = []
    for job in generate_fleet(jobs, seed).jobs:
        record = {k: v for k, v in job.items() if k not in {"shared_with", "ended", "condition"}}
        record["owner"] = USER
        if record["status"] not in ACTIVE_STATUSES:
            record["status"] = rng.choice(("RUNNING", "QUEUED"))
        records.append(record)
    path = directory / f"fleet-{jobs}.json"
    path.write_text(json.dumps({"users": {USER: PASSWORD}, "jobs": records}))
    return path


def start_server(kind: str, fleet: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    if kind == "sim":
        command = [sys.executable, "-m", "watchdog", "sim", "--fleet", str(fleet)]
    else:
        command = [sys.executable, str(ROOT / "bench" / "fast_tapis.py"), "--fleet", str(fleet)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit(f"the {kind} server did not start")
    return proc, json.loads(line)


def run_child(mode: str, info: dict[str, Any], args: argparse.Namespace, queries: Path) -> Any:
    command = [sys.executable, __file__, "--child", mode, "--info", json.dumps(info)]
    command += ["--config", str(args.config), "--polls", str(args.polls)]
    command += ["--queries", str(queries)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1])
    return float("nan")


def _written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def _control(info: dict[str, Any], method: str, path: str) -> Any:
    request = urllib.request.Request(info["base_url"] + path, method=method)
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


# -- children ---------------------------------------------------------------------------------


class _Sink:
    """Where the log goes during the benchmark: counted, kept in no file."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


def write_config(info: dict[str, Any], source: Path, directory: Path) -> Path:
    """The configuration file, pointed at the server, its state in `directory`, metrics on a
    free port, dry run."""
    import yaml  # noqa: PLC0415

    config = yaml.safe_load(source.read_text())
    config["tapis"].update(
        base_url=info["base_url"],
        tenant_id=info["tenant_id"],
        username=info["username"],
        password=info["password"],
    )
    config.setdefault("state", {})["path"] = str(directory / "state.db")
    if "metrics" in config:
        config["metrics"] = {"listen": "127.0.0.1:0"}
    config.pop("notify", None)
    config.setdefault("safety", {})["dry_run"] = True
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class _GcClock:
    """Seconds spent in the cyclic garbage collector."""

    def __init__(self) -> None:
        self.total = 0.0
        self._began = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._began


def child_daemon(info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import anyio  # noqa: PLC0415

    import watchdog.service.daemon as daemon_module  # noqa: PLC0415
    from watchdog.events import configure_logging  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    configure_logging(json=True, stream=_Sink())  # type: ignore[arg-type]
    completed: list[dict[str, Any]] = []

    def listen(event: dict[str, Any]) -> None:
        if event.get("event") in {"poll_completed", "poll_failed"}:
            completed.append(dict(event))

    daemon, server = daemon_module.build_daemon(
        write_config(info, args.config, tmp), dry_run=True, listeners=(listen,)
    )
    freeze = getattr(daemon_module, "freeze_startup", None)
    if freeze is not None:  # as run_daemon does
        freeze()
    listing: list[float] = []
    original = daemon_module.poll_jobs

    listing_cpu: list[float] = []

    async def timed_listing(*a: Any, **k: Any) -> Any:
        began, cpu = time.perf_counter(), time.process_time()
        try:
            return await original(*a, **k)
        finally:
            listing.append(time.perf_counter() - began)
            listing_cpu.append(time.process_time() - cpu)

    daemon_module.poll_jobs = timed_listing  # type: ignore[assignment]
    polls: list[dict[str, Any]] = []
    gc_clock = _GcClock()

    async def main() -> None:
        await daemon.client.login()
        async with anyio.create_task_group() as followers:
            for number in range(1, args.polls + 1):
                if number == args.polls:
                    _control(info, "DELETE", "/_sim/requests")
                cpu, written, in_gc = time.process_time(), _written(), gc_clock.total
                ok = await daemon.poll_once(followers)
                cpu, written = time.process_time() - cpu, _written() - written
                if not ok:
                    raise SystemExit(f"poll {number} failed: {completed[-1]}")
                event = completed[-1]
                polls.append(
                    {
                        "duration": event["duration_s"],
                        "listing": listing[-1],
                        "listing_cpu": listing_cpu[-1],
                        "cpu": cpu,
                        "gc": gc_clock.total - in_gc,
                        "written": written,
                        "rss_mb": _status_kib("VmRSS") / 1024,
                        "jobs": event["jobs_seen"],
                        "calls": event["api_calls"],
                        "matches": event["matches"],
                    }
                )
            followers.cancel_scope.cancel()
        await daemon.client.aclose()

    try:
        anyio.run(main)
    finally:
        daemon.store.close()
        if server is not None:
            server.close()
    log = _control(info, "GET", "/_sim/requests")
    searches = [r["query"] for r in log if r["endpoint"] == "search"]
    args.queries.write_text(json.dumps(searches))
    return {"polls": polls, "peak_mb": _status_kib("VmHWM") / 1024, "pages": len(searches)}


def child_floor(info: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import orjson  # noqa: PLC0415
    import requests  # noqa: PLC0415

    queries: list[str] = json.loads(args.queries.read_text())
    base = info["base_url"].rstrip("/")
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=16))
    login = session.post(
        f"{base}/v3/oauth2/tokens",
        json={"username": info["username"], "password": info["password"], "grant_type": "password"},
        timeout=60,
    )
    headers = {"X-Tapis-Token": login.json()["result"]["access_token"]["access_token"]}
    # One scan per key range, in the order the poll asked; the first page comes before them all.
    scans: dict[tuple[tuple[str, str], ...], list[str]] = defaultdict(list)
    for query in queries[1:]:
        key = tuple(sorted(p for p in parse_qsl(query) if p[0] not in _CURSOR_PARAMS))
        scans[key].append(query)
    records = 0

    def replay(loads: Callable[[bytes], Any]) -> tuple[float, float]:
        nonlocal records
        records = 0

        def fetch(query: str) -> None:
            nonlocal records
            resp = session.get(f"{base}/v3/jobs/search?{query}", headers=headers, timeout=60)
            resp.raise_for_status()
            records += len(loads(resp.content)["result"])

        def scan(part: list[str]) -> None:
            for query in part:
                fetch(query)

        cpu, wall = time.process_time(), time.perf_counter()
        fetch(queries[0])
        if len(scans) == 1:
            scan(next(iter(scans.values())))
        elif scans:
            with ThreadPoolExecutor(len(scans)) as pool:
                list(pool.map(scan, scans.values()))
        return time.perf_counter() - wall, time.process_time() - cpu

    # The floor as the issue defines it (json.loads), then the same requests with orjson, which
    # the daemon itself uses: the stricter floor.
    wall, cpu = replay(json.loads)
    wall_orjson, _ = replay(orjson.loads)
    return {
        "wall": wall,
        "wall_orjson": wall_orjson,
        "cpu": cpu,
        "pages": len(queries),
        "jobs": records,
    }


# -- the table --------------------------------------------------------------------------------


def spread(values: list[float], fmt: str) -> str:
    """`median [min-max]`."""
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def summarize(size: int, kind: str, runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    steady = [d["polls"][1:] or d["polls"] for d, _ in runs]
    floor = [f["wall"] for _, f in runs]
    poll = [statistics.median(p["duration"] for p in s) for s in steady]
    listing = [statistics.median(p["listing"] for p in s) for s in steady]
    ratio = [p / f for p, f in zip(poll, floor, strict=True)]
    strict = [p / f["wall_orjson"] for p, (_, f) in zip(poll, runs, strict=True)]
    listing_ratio = [p / f for p, f in zip(listing, floor, strict=True)]
    cpu_us = [statistics.median(p["cpu"] / max(1, p["jobs"]) * 1e6 for p in s) for s in steady]
    listing_us = [
        statistics.median(p["listing_cpu"] / max(1, p["jobs"]) * 1e6 for p in s) for s in steady
    ]
    kib = [statistics.median(p["written"] / 1024 for p in s) for s in steady]
    in_gc = [statistics.median(p["gc"] for p in s) for s in steady]
    cold = [d["polls"][0]["duration"] for d, _ in runs]
    cold_calls = runs[0][0]["polls"][0]["calls"]
    calls = runs[0][0]["polls"][-1]["calls"]
    rss1 = [d["polls"][0]["rss_mb"] for d, _ in runs]
    rss_last = [d["polls"][-1]["rss_mb"] for d, _ in runs]
    peak = [d["peak_mb"] for d, _ in runs]
    jobs = runs[0][0]["polls"][-1]["jobs"]
    pages = runs[0][1]["pages"]
    print(
        f"{size:>7} {kind:<4} {jobs:>7} {pages:>5} {calls:>5} | {spread(floor, '.2f'):<18} "
        f"{spread(listing, '.2f'):<18} {spread(listing_ratio, '.2f'):<17} "
        f"{spread(poll, '.2f'):<18} {spread(ratio, '.2f'):<17} {spread(strict, '.2f'):<17} | "
        f"{spread(cold, '.1f'):<17} {cold_calls:>6}"
    )
    steady_rows.append(
        f"{size:>7} {kind:<4} | {spread(cpu_us, '.1f'):<20} {spread(listing_us, '.1f'):<20} "
        f"{spread(in_gc, '.2f'):<18} "
        f"{spread(kib, '.1f'):<22} "
        f"{spread(rss1, '.0f'):<14} {spread(rss_last, '.0f'):<14} {spread(peak, '.0f'):<14}"
    )
    sys.stdout.flush()


steady_rows: list[str] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--servers", default="sim,fast")
    parser.add_argument("--config", type=Path, default=ROOT / "config.example.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--polls", type=int, default=10, help="polls per daemon run")
    parser.add_argument("--child", choices=["daemon", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        fn = child_daemon if args.child == "daemon" else child_floor
        print(json.dumps(fn(json.loads(args.info), args)))
        return

    print(
        f"whole poll = poll_completed.duration_s, polls 2-{args.polls} (steady state); listing = "
        f"inside poll_jobs; x = over the floor of the same run (requests + json.loads; orjson "
        f"floor: the same with orjson.loads); median [min-max] of {args.repeat}"
    )
    header = (
        f"{'jobs':>7} {'srv':<4} {'active':>7} {'pages':>5} {'calls':>5} | {'floor s':<18} "
        f"{'listing s':<18} {'listing x':<17} {'whole poll s':<18} {'whole poll x':<17} "
        f"{'x orjson floor':<17} | "
        f"{'poll 1 s':<17} {'calls1':>6}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            fleet = write_fleet(size, args.seed, Path(tmp))
            for kind in args.servers.split(","):
                proc, info = start_server(kind, fleet)
                runs = []
                try:
                    for number in range(args.repeat):
                        queries = Path(tmp) / f"queries-{size}-{kind}-{number}.json"
                        daemon = run_child("daemon", info, args, queries)
                        runs.append((daemon, run_child("floor", info, args, queries)))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                summarize(size, kind, runs)
    print()
    print(f"steady state (polls 2-{args.polls}), per poll; RSS after poll 1 and poll {args.polls}")
    header = (
        f"{'jobs':>7} {'srv':<4} | {'cpu us/job/poll':<20} {'of which listing':<20} "
        f"{'gc s/poll':<18} "
        f"{'KiB written/poll':<22} "
        f"{'RSS poll 1 MB':<14} {'RSS last MB':<14} {'peak RSS MB':<14}"
    )
    print(header)
    print("-" * len(header))
    for row in steady_rows:
        print(row)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
