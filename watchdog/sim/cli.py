"""`tapis-watchdog sim`: serve a simulated Tapis tenant until SIGTERM or SIGINT.

The first stdout line is one JSON object: `base_url`, `tenant_id`, `username`, `password` (of the
fleet's first user), so scripts and the demo can read where to connect.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from watchdog.errors import UsageError
from watchdog.sim.fleet import DEFAULT_FLEET, Fleet, load_fleet
from watchdog.sim.generate import generate_fleet
from watchdog.sim.simulator import Simulator

if TYPE_CHECKING:
    import argparse


def build_fleet(args: argparse.Namespace) -> Fleet:
    """The fleet the arguments ask for: a file, a generated one, or the small default.

    Raises:
        UsageError: both --fleet and --jobs, a bad job count.
        ConfigError: a bad fleet file.
    """
    if args.fleet and args.jobs is not None:
        raise UsageError("give either --fleet or --jobs, not both")
    if args.fleet:
        return load_fleet(args.fleet)
    if args.jobs is not None:
        try:
            return generate_fleet(args.jobs, args.seed)
        except ValueError as exc:
            raise UsageError(f"--jobs: {exc}") from exc
    return Fleet.from_dict(DEFAULT_FLEET)


def cmd_sim(args: argparse.Namespace) -> int:
    """Run the simulator in the foreground; exit 0 on SIGTERM/SIGINT.

    Raises:
        ConfigError: the fleet is invalid; UsageError: the address cannot be bound (both exit 2).
    """
    fleet = build_fleet(args)
    sim = Simulator(fleet, seed=args.seed, live=args.live)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with contextlib.ExitStack() as stack:
            try:
                server = stack.enter_context(sim.serve(args.host, args.port))
            except OSError as exc:
                where = f"{args.host}:{args.port}"
                raise UsageError(
                    f"--host/--port: cannot listen on {where}: {exc.strerror or exc}"
                ) from None
            username, password = fleet.first_user
            line = {
                "base_url": server.base_url,
                "tenant_id": sim.tenant_id,
                "username": username,
                "password": password,
            }
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
