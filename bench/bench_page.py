"""How fast the status page answers on a 10,000-job fleet, through the daemon's own listener.

The simulator serves a generated fleet of `--jobs` active jobs (`bench_poll.write_fleet`), the
daemon runs as a subprocess (`run -c FILE`) with the example configuration's rules, in dry run
(the fleet never changes, and every would-be cancel is recorded, which makes the page heavier),
listening on 127.0.0.1:0. After `--polls` polls, each path is fetched `--requests` times in a row
over HTTP (a fresh connection each, as a browser's refresh does), and the latency figures are
printed: median, 95th percentile and max, with the size of the answer. Target: well under 100 ms.

Usage: .venv/bin/python bench/bench_page.py [--jobs 10000] [--polls 2] [--requests 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_poll import PASSWORD, ROOT, USER, start_server, write_fleet


def _config(info: dict[str, object], directory: Path) -> Path:
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    config = {
        "tapis": {
            "base_url": info["base_url"],
            "tenant_id": info["tenant_id"],
            "username": USER,
            "password": PASSWORD,
            "timeout": "60s",
        },
        "poll": {"interval": "20s", "page_size": 1000},
        "state": {"path": str(directory / "state.db")},
        "safety": {"dry_run": True},
        "rules": example["rules"],
        "metrics": {"listen": "127.0.0.1:0"},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _get(url: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
        status = response.status
    return time.perf_counter() - started, status, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--polls", type=int, default=2)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="keep the state store in this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        server, info = start_server("sim", write_fleet(args.jobs, 0, directory))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "run", "-c", str(_config(info, directory))],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert daemon.stdout is not None
            url, polls, events = "", 0, 0
            for line in daemon.stdout:
                event = json.loads(line)
                events += 1
                if event["event"] == "watchdog_started":
                    url = event["metrics_url"]
                elif event["event"] == "poll_completed":
                    polls += 1
                    print(
                        f"poll {polls}: {event['jobs_seen']} jobs, {event['matches']} matches, "
                        f"{event['duration_s']}s"
                    )
                    if polls >= args.polls:
                        break
            summary = json.loads(urllib.request.urlopen(f"{url}/api/summary").read())
            job = next(
                (row["job_uuid"] for row in summary["skipped"]),
                next(iter(summary["jobs_by_status"]), ""),
            )
            print(
                f"store: {events} events; page: {summary['jobs_watched']} jobs watched, "
                f"{len(summary['skipped'])} skipped cancels, {len(summary['warnings'])} warnings, "
                f"{len(summary['grace'])} grace periods"
            )
            for path in ("/", "/api/summary", f"/jobs/{job}", f"/api/jobs/{job}"):
                _get(url + path)  # warm: templates compiled once per process
                runs = [_get(url + path) for _ in range(args.requests)]
                times = sorted(t * 1000 for t, _, _ in runs)
                p95 = times[max(0, round(0.95 * len(times)) - 1)]
                label = path if len(path) < 20 else path[:16] + "..."
                print(
                    f"{label:<20} status {runs[0][1]}  {runs[0][2]:>8} bytes  median "
                    f"{statistics.median(times):6.1f} ms  p95 {p95:6.1f} ms  "
                    f"max {times[-1]:6.1f} ms"
                )
        finally:
            daemon.terminate()
            daemon.wait(10)
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
