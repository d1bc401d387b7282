"""How fast the simulator serves big pages, measured with a plain HTTP client on loopback.

Run: .venv/bin/python bench/bench_sim.py [--jobs 100000]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time
from dataclasses import replace
from urllib.parse import urlencode, urlsplit

import orjson

from watchdog.sim import Simulator, generate_fleet


def _get(conn: http.client.HTTPConnection, path: str, params: dict[str, str], token: str):
    begin = time.perf_counter()
    conn.request("GET", f"{path}?{urlencode(params)}", headers={"X-Tapis-Token": token})
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - begin
    assert resp.status == 200, body[:200]
    return elapsed, len(body), orjson.loads(body)


def _row(name: str, times: list[float], size: int, records: int) -> None:
    first, rest = times[0], times[1:] or times
    median = statistics.median(rest) * 1000
    print(f"{name:<52} {first * 1000:9.1f} {median:9.1f} {records:8d} {size / 1e6:8.1f}")


def bench_page(
    sim: Simulator, url: str, name: str, params: dict[str, str], repeat: int = 5
) -> None:
    host = urlsplit(url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    token = sim.mint_token("alice")
    times = []
    size = records = 0
    for _ in range(repeat):
        elapsed, size, body = _get(conn, "/v3/jobs/search", params, token)
        times.append(elapsed)
        records = len(body["result"])
    conn.close()
    _row(name, times, size, records)


def bench_full_paging(sim: Simulator, url: str, name: str, params: dict[str, str]) -> None:
    host = urlsplit(url)
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    token = sim.mint_token("alice")
    total_bytes = records = pages = 0
    after = None
    begin = time.perf_counter()
    while True:
        query = {**params, "orderBy": "uuid(asc)"}
        if after:
            query["uuid.gt"] = after
        _, size, body = _get(conn, "/v3/jobs/search", query, token)
        result = body["result"]
        if not result:
            break
        pages += 1
        records += len(result)
        total_bytes += size
        after = result[-1]["uuid"]
    elapsed = time.perf_counter() - begin
    conn.close()
    mb = total_bytes / 1e6
    print(f"{name:<52} {elapsed * 1000:9.1f} {'':>9} {records:8d} {mb:8.1f}  ({pages} pages)")


ACTIVE = (
    "PENDING,PROCESSING_INPUTS,STAGING_INPUTS,STAGING_JOB,SUBMITTING_JOB,QUEUED,RUNNING,"
    "ARCHIVING,BLOCKED,PAUSED"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()

    print(f"{'measure':<52} {'first ms':>9} {'median ms':>9} {'records':>8} {'MB':>8}")
    base = generate_fleet(10_000, seed=1)
    mine = replace(base, jobs=tuple({**j, "owner": "alice"} for j in base.jobs))
    begin = time.perf_counter()
    sim = Simulator(mine)
    print(f"# built 10,000 jobs in {time.perf_counter() - begin:.2f} s")
    with sim.serve() as server:
        url = server.base_url
        bench_page(
            sim,
            url,
            "10k jobs, limit=10000, select=allAttributes",
            {"limit": "10000", "select": "allAttributes"},
        )
        bench_page(sim, url, "10k jobs, limit=10000, summary", {"limit": "10000"})
        bench_page(
            sim,
            url,
            "10k jobs, status.in=<active>, orderBy=uuid, allAttributes",
            {
                "limit": "10000",
                "select": "allAttributes",
                "orderBy": "uuid(asc)",
                "status.in": ACTIVE,
            },
        )

    begin = time.perf_counter()
    big = Simulator(generate_fleet(args.jobs, seed=2))
    print(f"# built {args.jobs:,} generated jobs in {time.perf_counter() - begin:.2f} s")
    with big.serve() as server:
        url = server.base_url
        bench_page(
            big,
            url,
            f"{args.jobs // 1000}k jobs, first page limit=1000, summary",
            {"limit": "1000"},
        )
        bench_page(
            big,
            url,
            f"{args.jobs // 1000}k jobs, first page limit=1000, orderBy=uuid, all",
            {"limit": "1000", "orderBy": "uuid(asc)", "select": "allAttributes"},
        )
        bench_full_paging(
            big,
            url,
            f"{args.jobs // 1000}k jobs, all of alice's, keyset 1000/page, summary",
            {"limit": "1000"},
        )
        bench_full_paging(
            big,
            url,
            f"{args.jobs // 1000}k jobs, active of alice's, keyset 500/page, all",
            {
                "limit": "500",
                "select": "allAttributes",
                "status.in": ACTIVE,
            },
        )


if __name__ == "__main__":
    main()
