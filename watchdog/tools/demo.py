"""`tapis-watchdog demo`: the simulator and the daemon together, so a newcomer sees rules fire.

A live simulated tenant holds a small fleet: a runaway job on a budgeted system, one that crosses
its budget during the demo, a job whose cancel must be sent twice, a bad input, a job stuck in
staging, one waiting too long in the queue, an exempt job and healthy jobs that come and go. The
daemon watches it with the rules of `config.example.yaml` (tighter cadence so it all happens in
well under a minute), prints every event as it goes, and ends with a summary table. Everything runs
in this process and in a temporary directory, and nothing is left running afterwards.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from watchdog.events import configure_logging
from watchdog.sim import Simulator

if TYPE_CHECKING:
    import argparse

DEMO_SECONDS = 30.0
POLL_INTERVAL = "5s"

DEMO_FLEET: dict[str, Any] = {
    "tenant": "designsafe",
    "users": {"demo": "demo-password"},
    "cancel_delay": "3s",
    "live": {"tick": "1s", "advance": 0.15, "running_advance": 0.02, "fail": 0.02,
             "arrivals": 0.1, "max_jobs": 30},
    "jobs": [
        {"name": "overnight-sweep", "status": "RUNNING", "appId": "opensees-mp-s3",
         "execSystemId": "frontera", "remoteStarted": "-12h07m", "nodeCount": 4, "live": False},
        {"name": "storm-surge-ensemble", "status": "RUNNING", "appId": "adcirc",
         "execSystemId": "frontera", "remoteStarted": "-11h59m40s", "nodeCount": 8,
         "live": False},
        {"name": "blocked-on-frontera", "status": "RUNNING", "appId": "opensees-sp",
         "execSystemId": "frontera", "remoteStarted": "-14h", "nodeCount": 1,
         "cancel": "ignore_first", "live": False},
        {"name": "mesh-refinement", "status": "QUEUED", "appId": "opensees-sp",
         "execSystemId": "stampede3", "remoteSubmitted": "-20m", "live": False,
         "inputs": ["tapis://designsafe.storage.default/demo/scratch/mesh_v3.tmp"]},
        {"name": "wave-flume-staging", "status": "STAGING_INPUTS", "appId": "lammps",
         "execSystemId": "stampede3", "created": "-7h05m", "lastUpdated": "-1m", "live": False,
         "history": [["PENDING", "-7h05m"], ["PROCESSING_INPUTS", "-7h04m"],
                     ["STAGING_INPUTS", "-7h03m"]]},
        {"name": "md-long-wait", "status": "QUEUED", "appId": "namd", "execSystemId": "ls6",
         "execSystemLogicalQueue": "normal", "remoteSubmitted": "-2d03h", "live": False},
        {"name": "thesis-final-run", "status": "RUNNING", "appId": "opensees-mp-s3",
         "execSystemId": "frontera", "remoteStarted": "-15h", "tags": ["thesis-final"],
         "live": False},
        {"name": "healthy-adcirc", "status": "RUNNING", "appId": "adcirc",
         "execSystemId": "frontera", "remoteStarted": "-2h", "nodeCount": 2},
        {"name": "healthy-namd", "status": "QUEUED", "appId": "namd", "execSystemId": "ls6",
         "remoteSubmitted": "-1h"},
        {"name": "healthy-lammps", "status": "STAGING_JOB", "appId": "lammps",
         "execSystemId": "stampede3", "created": "-3m"},
    ],
}  # fmt: skip

DEMO_RULES = """
rules:
  - name: frontera-12h
    description: Simulations on Frontera get a 12-hour budget
    match: {app: ["opensees*", adcirc], exec_system: frontera, status: RUNNING}
    when: {runtime_over: 12h}
    action: cancel
  - name: scratch-inputs
    description: Inputs staged from scratch or temporary paths are purged mid-run
    match: {status: [PENDING, PROCESSING_INPUTS, STAGING_INPUTS, QUEUED]}
    when:
      input_matches: {pattern: '(^|/)(scratch|tmp)/|\\.tmp$', in: [file_inputs]}
    action: cancel
  - name: stuck-staging
    description: Staging that has not finished in 6 hours is stuck
    match: {status: [STAGING_INPUTS, STAGING_JOB]}
    when: {in_status_over: 6h}
    action: cancel
  - name: long-queue
    description: Tell me about jobs waiting more than two days in the normal queue
    match: {queue: normal, status: QUEUED}
    when: {in_status_over: 2d}
    action: warn
"""


def demo_config(base_url: str, tenant: str, state_dir: Path) -> str:
    """The demo's configuration: config.example.yaml's rules at a demo's cadence."""
    return f"""
tapis:
  base_url: {base_url}
  tenant_id: {tenant}
  username: demo
  password: demo-password
  timeout: 10s
poll:
  interval: {POLL_INTERVAL}
state:
  path: {state_dir / "state.db"}
safety:
  verify_timeout: 40s
  resend_after: 8s
  exempt: {{tags: [watchdog-exempt, thesis-final]}}
{DEMO_RULES}"""


@dataclass
class Summary:
    """What happened to each (job, rule), gathered from the events as they are emitted."""

    started: float = field(default_factory=time.monotonic)
    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def observe(self, event: dict[str, Any]) -> None:
        uuid, rule = event.get("job_uuid"), event.get("rule")
        if not uuid or not rule:
            return
        if event.get("job_name"):  # every job event names its job
            self.names[uuid] = str(event["job_name"])
        row = self.rows.setdefault(
            (uuid, rule), {"reason": event.get("reason", ""), "outcome": "matched", "time": "-"}
        )
        name = event["event"]
        if name == "job_warned":
            row["outcome"] = "warned"
        elif name == "job_cancel_requested":
            row["outcome"] = "cancel sent"
        elif name == "job_cancel_skipped":
            row["outcome"] = f"skipped: {event.get('why')}"
        elif name == "job_cancelled":
            row["outcome"] = f"cancelled ({event.get('final_status')})"
            row["time"] = f"{event.get('latency_s', 0):.1f}s"
        elif name in {"job_cancel_unconfirmed", "job_cancel_failed"}:
            row["outcome"] = name.removeprefix("job_cancel_")

    def table(self) -> str:
        headers = ("job", "rule", "reason", "outcome", "to confirmed")
        lines = [
            (self.names.get(uuid, uuid[:8]), rule, _short(r["reason"]), r["outcome"], r["time"])
            for (uuid, rule), r in self.rows.items()
        ]
        widths = [
            max(len(h), *(len(str(line[i])) for line in lines)) for i, h in enumerate(headers)
        ]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*line) for line in lines]
        return "\n".join(out)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_demo(args: argparse.Namespace) -> int:
    from watchdog.service.daemon import build_daemon  # noqa: PLC0415

    # The demo is watched by a person: console text unless --log-format said otherwise.
    if getattr(args, "log_format", None) is None:
        configure_logging(log_format="console", level=getattr(args, "log_level", "info"))
    summary = Summary()
    sim = Simulator(DEMO_FLEET, seed=7, live=True)
    with tempfile.TemporaryDirectory(prefix="tapis-watchdog-demo-") as tmp, sim.serve() as server:
        state_dir = Path(tmp)
        config_path = state_dir / "demo.yaml"
        config_path.write_text(demo_config(server.base_url, sim.tenant_id, state_dir))
        print(  # noqa: T201
            f"tapis-watchdog demo: a simulated Tapis tenant at {server.base_url}, "
            f"polled every {POLL_INTERVAL} for about {DEMO_SECONDS:.0f}s\n",
            flush=True,
        )
        daemon, metrics_server = build_daemon(config_path, listeners=(summary.observe,))
        daemon.until = lambda: time.monotonic() - summary.started >= DEMO_SECONDS
        try:
            code = anyio.run(daemon.serve)
        finally:
            daemon.store.close()
            if metrics_server is not None:
                metrics_server.close()
    print("\nWhat the watchdog did:\n", flush=True)  # noqa: T201
    print(summary.table(), flush=True)  # noqa: T201
    print(  # noqa: T201
        f"\nDone in {time.monotonic() - summary.started:.0f}s. Next: `tapis-watchdog init` "
        "writes config.yaml (and the systemd unit) here; `tapis-watchdog check -c config.yaml` "
        "validates it, no credentials needed; `tapis-watchdog run -c config.yaml --dry-run "
        "--once` shows what your jobs would get.",
        file=sys.stdout,
        flush=True,
    )
    return code
