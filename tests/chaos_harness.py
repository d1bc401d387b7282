"""Chaos: the fault matrix and a seeded SIGKILL campaign, shared by the suite and the bench.

The fault matrix: each of nine faults (latency, 500, 503, 429 with Retry-After, reset, hang,
malformed JSON, an empty envelope, an expired token) on each of search, status and cancel, 27
cells. In each cell a daemon polls a small fleet while the fault is active for one poll, then
two more polls an interval apart; by then every offender must be cancelled (Tapis shows it
CANCELLED), and every faulted request must have its `tapis_error`.

The campaign: a fleet with runaway jobs (some ignore their first cancel), a grace rule and a
notification receiver; `tapis-watchdog run` as a real process, killed with SIGKILL at seeded
random moments and restarted, then a clean run until every offender is cancelled. Then: every
offender cancelled and confirmed, no job sent more than two cancels, no duplicate warning,
sendEvent or notification, and the state file passes `PRAGMA integrity_check`.

`bench/bench_chaos.py` runs both at full size and prints the figures; the suite runs them small.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import anyio
import yaml

from watchdog.service.daemon import build_daemon
from watchdog.sim import Simulator

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

USER, PASSWORD = "alice", "chaos-password-3f9e"
FAULTS: dict[str, dict[str, Any]] = {
    "latency": {"kind": "latency", "seconds": 0.3},
    "500": {"kind": "error", "status": 500},
    "503": {"kind": "error", "status": 503},
    "429": {"kind": "rate_limit", "seconds": 1},
    "reset": {"kind": "reset"},
    "hang": {"kind": "hang", "seconds": 2},
    "malformed": {"kind": "malformed"},
    "envelope": {"kind": "envelope"},
    "token": {"kind": "token_expired", "count": 1},
}
ENDPOINTS: dict[str, str] = {
    "search": "search_jobs",
    "status": "get_status",
    "cancel": "cancel_job",
}
INTERVAL_S = 2.0
LONG_RUN: dict[str, Any] = {
    "name": "long-run",
    "match": {"status": "RUNNING"},
    "when": {"runtime_over": "12h"},
    "action": "cancel",
}
GRACE_RULE: dict[str, Any] = {
    "name": "stuck-queue",
    "match": {"status": "QUEUED"},
    "when": {"in_status_over": "2d"},
    "action": "cancel",
    "grace": "2s",
}


def config_data(base_url: str, tenant_id: str, state: Path, **extra: Any) -> dict[str, Any]:
    return {
        "tapis": {
            "base_url": base_url,
            "tenant_id": tenant_id,
            "username": USER,
            "password": PASSWORD,
            "timeout": "1s",
        },
        "poll": {"interval": f"{INTERVAL_S:g}s"},
        "state": {"path": str(state)},
        "safety": {
            "verify_timeout": "8s",
            "resend_after": f"{INTERVAL_S:g}s",
            "max_cancels_per_poll": 100,
            "max_cancels_per_hour": 1000,
        },
        "rules": [LONG_RUN, GRACE_RULE],
        **extra,
    }


# -- the fault matrix ------------------------------------------------------------------------------


@dataclass
class CellResult:
    """What one (fault, endpoint) cell came to."""

    fault: str
    endpoint: str
    offenders: int
    cancelled_in_time: int
    """Offenders Tapis showed CANCELLED two poll intervals after the fault ended."""
    confirmed: int
    """Offenders with `job_cancelled` once following ended."""
    max_cancels: int
    faulted: int
    """Requests of the faulted endpoint that the fault spoiled (latency spoils none)."""
    logged: int
    """`tapis_error` events for that endpoint's operation."""
    after_fault_s: float | None
    """From the end of the fault to the last offender Tapis showed CANCELLED."""

    @property
    def ok(self) -> bool:
        return (
            self.cancelled_in_time == self.offenders
            and self.confirmed == self.offenders
            and self.max_cancels <= 2
            and self.logged >= self.faulted
        )


def matrix_fleet(offenders: int, healthy: int) -> dict[str, Any]:
    jobs = [
        {"status": "RUNNING", "remoteStarted": "-13h", "tags": ["bad"]} for _ in range(offenders)
    ]
    jobs += [{"status": "RUNNING", "remoteStarted": "-1h"} for _ in range(healthy)]
    return {"users": {USER: PASSWORD}, "cancel_delay": 0.3, "jobs": jobs}


async def run_cell(
    fault: str, endpoint: str, directory: Path, *, offenders: int = 3, healthy: int = 2
) -> CellResult:
    """One cell: the fault for one poll, then two polls an interval apart, then the checks."""
    sim = Simulator(matrix_fleet(offenders, healthy))
    events: list[dict[str, Any]] = []
    with sim.serve() as server:
        bad = [u for u in sim.uuids() if "bad" in sim.job(u)["tags"]]
        path = directory / "config.yaml"
        data = config_data(str(server.base_url), sim.tenant_id, directory / "state.db")
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        daemon, _ = build_daemon(path, listeners=(events.append,))
        try:
            await daemon.client.login()
            async with anyio.create_task_group() as followers:
                sim.set_fault(**FAULTS[fault], endpoint=endpoint)
                await daemon.poll_once(followers)
                sim.clear_faults()
                ended = time.monotonic()
                last_cancel = _watch_cancels(sim, bad)
                for _ in range(2):
                    await anyio.sleep(INTERVAL_S)
                    await daemon.poll_once(followers)
                await anyio.sleep(max(0.0, ended + 2 * INTERVAL_S - time.monotonic()))
                in_time = sum(sim.job(u)["status"] == "CANCELLED" for u in bad)
                with anyio.move_on_after(10):
                    while _following(daemon):  # noqa: ASYNC110 - the follower has no event
                        await anyio.sleep(0.1)
                followers.cancel_scope.cancel()
        finally:
            await daemon.client.aclose()
            daemon.store.close()
        landed = last_cancel()
    spoiled = sum(
        1 for r in sim.requests if r.endpoint == endpoint and r.fault not in {None, "latency"}
    )
    operation = ENDPOINTS[endpoint]
    confirmed = {e["job_uuid"] for e in events if e["event"] == "job_cancelled"}
    return CellResult(
        fault=fault,
        endpoint=endpoint,
        offenders=len(bad),
        cancelled_in_time=in_time,
        confirmed=len(confirmed & set(bad)),
        max_cancels=max(sim.cancels_received(u) for u in sim.uuids()),
        faulted=spoiled,
        logged=sum(
            1 for e in events if e["event"] == "tapis_error" and e["operation"] == operation
        ),
        after_fault_s=None if landed is None else max(0.0, landed - ended),
    )


def _following(daemon: Any) -> bool:
    return bool(daemon.actor._follower.following)


def _watch_cancels(sim: Simulator, uuids: list[str]) -> Any:
    """Poll the simulator in a thread; returns a callable giving when the last job turned
    CANCELLED (monotonic), or None while one is not."""
    seen: dict[str, float] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and len(seen) < len(uuids):
            for uuid in uuids:
                if uuid not in seen and sim.job(uuid)["status"] == "CANCELLED":
                    seen[uuid] = time.monotonic()
            stop.wait(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()

    def last() -> float | None:
        stop.set()
        thread.join(1)
        return max(seen.values()) if len(seen) == len(uuids) else None

    return last


async def run_matrix(directory: Path) -> list[CellResult]:
    """All 27 cells, concurrently (each has its own simulator, daemon and state file)."""
    results: list[CellResult] = []

    for fault in FAULTS:
        for endpoint in ENDPOINTS:
            (directory / f"{fault}-{endpoint}").mkdir(parents=True, exist_ok=True)

    async def one(fault: str, endpoint: str) -> None:
        results.append(await run_cell(fault, endpoint, directory / f"{fault}-{endpoint}"))

    async with anyio.create_task_group() as tg:
        for fault in FAULTS:
            for endpoint in ENDPOINTS:
                tg.start_soon(one, fault, endpoint)
    return sorted(results, key=lambda r: (list(FAULTS).index(r.fault), r.endpoint))


# -- the SIGKILL campaign --------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """An Apprise `json://` target that keeps every notification body."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.bodies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server_address[1]}/hook"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.bodies.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


@contextmanager
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class CampaignResult:
    """What a campaign came to."""

    kills: int
    offenders: int
    cancelled: int
    confirmed: int
    max_cancels: int
    duplicate_warnings: int
    duplicate_send_events: int
    duplicate_notifications: int
    integrity: str
    healthy_cancelled: int
    clean_run_s: float
    jobs_sent_two: int = 0
    lost_in_window: int = 0
    """Offenders whose last allowed request was marked as leaving, then killed before Tapis got
    it: the one window the two-request limit cannot close (the daemon cannot tell it from a
    request that arrived), so such a job ends unconfirmed instead of receiving a third cancel."""
    left: list[str] = field(default_factory=list)
    """For each offender not cancelled: its cancels received and its attempts' answers."""
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.cancelled + self.lost_in_window == self.offenders
            and self.confirmed + self.lost_in_window == self.offenders
            and self.max_cancels <= 2
            and self.duplicate_warnings == 0
            and self.duplicate_send_events == 0
            and self.duplicate_notifications == 0
            and self.integrity == "ok"
            and self.healthy_cancelled == 0
        )


def campaign_fleet(rng: random.Random, runaways: int, stuck: int, healthy: int) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = []
    for index in range(runaways):
        mode = "ignore_first" if index % 3 == 0 else "honour"
        jobs.append({"status": "RUNNING", "remoteStarted": "-13h", "cancel": mode, "tags": ["bad"]})
    jobs += [{"status": "QUEUED", "remoteSubmitted": "-3d", "tags": ["bad"]} for _ in range(stuck)]
    jobs += [{"status": "RUNNING", "remoteStarted": "-1h"} for _ in range(healthy)]
    rng.shuffle(jobs)
    return {"users": {USER: PASSWORD}, "cancel_delay": 0.5, "jobs": jobs}


def run_campaign(
    directory: Path,
    *,
    kills: int,
    seed: int,
    runaways: int = 6,
    stuck: int = 3,
    healthy: int = 4,
    max_life_s: float = 3.0,
    clean_timeout_s: float = 60.0,
) -> CampaignResult:
    """Kill `tapis-watchdog run` `kills` times at seeded random moments, then run it clean."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    sim = Simulator(campaign_fleet(rng, runaways, stuck, healthy))
    lines: list[str] = []
    with sim.serve() as server, receiver() as hook:
        state = directory / "state.db"
        notify = [{"url": hook.url, "events": ["job_warned", "job_cancelled"]}]
        data = config_data(str(server.base_url), sim.tenant_id, state, notify=notify)
        config = directory / "config.yaml"
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        for index in range(kills):
            # New work arrives while the daemon keeps dying, so kills land on sends too.
            mode = "ignore_first" if index % 2 == 0 else "honour"
            sim.add_job(
                {"status": "RUNNING", "remoteStarted": "-13h", "cancel": mode, "tags": ["bad"]}
            )
            proc = _start(config, directory)
            time.sleep(rng.uniform(0.2, max_life_s))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
            lines += out.splitlines()
        offenders = [u for u in sim.uuids() if "bad" in sim.job(u).get("tags", [])]
        healthy_jobs = [u for u in sim.uuids() if u not in offenders]
        started = time.monotonic()
        proc = _start(config, directory)
        try:
            deadline = started + clean_timeout_s
            while time.monotonic() < deadline and not _all_done(state, offenders):
                time.sleep(0.25)
            clean_s = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            # A campaign cut short must not leave its daemon running into the next test.
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        lines += out.splitlines()
        events = [_parse(line) for line in lines]
        events = [e for e in events if e is not None]
        warned = Counter((e["job_uuid"], e["rule"]) for e in events if e["event"] == "job_warned")
        send_events = Counter(
            r.path for r in sim.requests if r.method == "POST" and r.endpoint == "sendEvent"
        )
        notes = Counter(_note_key(body) for body in hook.bodies)
        confirmed = _confirmed(state)
        cancels = {u: sim.cancels_received(u) for u in sim.uuids()}
        return CampaignResult(
            kills=kills,
            offenders=len(offenders),
            cancelled=sum(sim.job(u)["status"] == "CANCELLED" for u in offenders),
            confirmed=len(confirmed & set(offenders)),
            max_cancels=max(cancels.values()),
            duplicate_warnings=sum(n - 1 for n in warned.values() if n > 1),
            duplicate_send_events=sum(n - 1 for n in send_events.values() if n > 1),
            duplicate_notifications=sum(n - 1 for n in notes.values() if n > 1),
            integrity=_integrity(state),
            healthy_cancelled=sum(cancels[u] > 0 for u in healthy_jobs),
            clean_run_s=clean_s,
            jobs_sent_two=sum(n == 2 for n in cancels.values()),
            lost_in_window=sum(
                sim.job(u)["status"] != "CANCELLED" and cancels[u] < _left_unanswered(state, u)
                for u in offenders
            ),
            left=[
                f"{u} {sim.job(u)['status']} received={cancels[u]} {_attempts(state, u)}"
                for u in offenders
                if sim.job(u)["status"] != "CANCELLED"
            ],
            lines=lines,
        )


def _start(config: Path, directory: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "STATE_DIR"))}
    return subprocess.Popen(
        [sys.executable, "-m", "watchdog", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=directory,
    )


def _parse(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _note_key(body: dict[str, Any]) -> str:
    return json.dumps([body.get("title"), body.get("message")], sort_keys=True)


def _connect(state: Path) -> sqlite3.Connection | None:
    if not state.exists():
        return None
    return sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5)


def _confirmed(state: Path) -> set[str]:
    conn = _connect(state)
    if conn is None:
        return set()
    try:
        rows = conn.execute("SELECT job_uuid FROM cancels WHERE outcome = 'cancelled'").fetchall()
    except sqlite3.Error:
        return set()
    finally:
        conn.close()
    return {row[0] for row in rows}


def _left_unanswered(state: Path, job_uuid: str) -> int:
    """How many requests may have reached Tapis by the store: answered as received, or marked as
    leaving with no answer."""
    conn = _connect(state)
    if conn is None:
        return 0
    try:
        row = conn.execute(
            "SELECT count(*) FROM cancel_attempts WHERE job_uuid = ?"
            " AND (answer IN ('accepted', 'lost') OR (answer IS NULL AND left_at IS NOT NULL))",
            (job_uuid,),
        ).fetchone()
    finally:
        conn.close()
    return int(row[0])


def _attempts(state: Path, job_uuid: str) -> str:
    conn = _connect(state)
    if conn is None:
        return ""
    try:
        cancels = conn.execute(
            "SELECT id, outcome, sent_at IS NOT NULL FROM cancels WHERE job_uuid = ?", (job_uuid,)
        ).fetchall()
        attempts = conn.execute(
            "SELECT cancel_id, answer FROM cancel_attempts WHERE job_uuid = ?", (job_uuid,)
        ).fetchall()
    finally:
        conn.close()
    return f"cancels={cancels} attempts={attempts}"


def _all_done(state: Path, offenders: list[str]) -> bool:
    return _confirmed(state) >= set(offenders)


def _integrity(state: Path) -> str:
    conn = sqlite3.connect(state, timeout=5)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()
