"""The service harness: the daemon as systemd runs it, against a simulator it has not seen.

The daemon is a real subprocess (`python -m watchdog run -c FILE`) with `NOTIFY_SOCKET` pointing
at a datagram socket bound here and a small `WATCHDOG_USEC`. Its JSON event lines are read from
stdout in a thread; the sd_notify datagrams are read in another. Every wait is bounded and fails
with what was seen so far. The simulator runs in the test's process, so faults, jobs and the
request log are reached through its in-process API.

This module holds helpers only; the service tests are in the other `test_service*` files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from watchdog.sim import Simulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

Event = dict[str, Any]
USER, PASSWORD = "alice", "alice-service-password-5e2a"
WAIT_S = 15.0
STOP_WITHIN_S = 5.0
# systemd's watchdog at 2 s: the daemon must ping at least every second.
WATCHDOG_USEC = 2_000_000

OFFENDER: dict[str, Any] = {
    "status": "RUNNING",
    "appId": "opensees-mp-s3",
    "execSystemId": "frontera",
    "remoteStarted": "-13h",
    "nodeCount": 2,
}
HEALTHY: dict[str, Any] = {
    "status": "RUNNING",
    "appId": "opensees-mp-s3",
    "execSystemId": "frontera",
    "remoteStarted": "-1h",
}
RUNTIME_RULE: dict[str, Any] = {
    "name": "frontera-12h",
    "match": {"exec_system": "frontera", "status": ["RUNNING"]},
    "when": {"runtime_over": "12h"},
    "action": "cancel",
}


def fleet(*jobs: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A fleet with the one test user, cancels that land at once, and `jobs`."""
    return {"users": {USER: PASSWORD}, "cancel_delay": "0s", "jobs": list(jobs), **extra}


def config_text(
    base_url: str,
    state_dir: Path,
    *,
    rules: list[dict[str, Any]] | None = None,
    safety: Mapping[str, Any] | None = None,
    timeout: str = "2s",
    **sections: Any,
) -> str:
    """A configuration for the simulator at `base_url`, polling every second."""
    data: dict[str, Any] = {
        "tapis": {
            "base_url": base_url,
            "tenant_id": "designsafe",
            "username": USER,
            "password": PASSWORD,
            "timeout": timeout,
        },
        "poll": {"interval": "1s"},
        "state": {"path": str(state_dir / "state.db")},
        "safety": {"verify_timeout": "30s", "resend_after": "20s", **(safety or {})},
        "rules": rules if rules is not None else [RUNTIME_RULE],
        **sections,
    }
    return yaml.safe_dump(data, sort_keys=False)


class NotifySocket:
    """A bound `AF_UNIX` datagram socket that records every sd_notify message it receives."""

    def __init__(self, directory: Path) -> None:
        path = directory / f"notify-{len(list(directory.glob('notify-*.sock')))}.sock"
        if len(str(path)) > 100:  # sun_path holds 108 bytes; pytest's tmp_path can be longer
            path = Path(tempfile.mkdtemp(prefix="wd-")) / "notify.sock"
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._cond:
                self.messages.append(fields)
                self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[dict[str, str]]], bool], what: str, timeout: float = WAIT_S
    ) -> list[dict[str, str]]:
        """Wait until `predicate(messages)` holds; the messages so far. Fails after `timeout`."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout):
                pytest.fail(f"no sd_notify {what} within {timeout}s; got {self.messages}")
            return list(self.messages)

    def count(self, key: str) -> int:
        with self._cond:
            return sum(1 for m in self.messages if key in m)

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self._sock.close()
        self.path.unlink(missing_ok=True)


@dataclass
class DaemonProcess:
    """The daemon subprocess, its events (parsed stdout lines) and its sd_notify messages."""

    proc: subprocess.Popen[bytes]
    notify: NotifySocket
    stderr_path: Path
    events: list[Event] = field(default_factory=list)
    other_lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _eof: bool = False

    def start_reader(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with self._cond:
                if isinstance(event, dict):
                    self.events.append(event)
                else:
                    self.other_lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    # -- waiting ---------------------------------------------------------------------------------

    def wait_event(
        self,
        name: str,
        timeout: float = WAIT_S,
        *,
        after: int = 0,
        **fields: Any,
    ) -> tuple[int, Event]:
        """The first event `name` at index >= `after` whose fields match; its index and dict."""

        def found() -> tuple[int, Event] | None:
            for index in range(after, len(self.events)):
                event = self.events[index]
                if event.get("event") == name and all(event.get(k) == v for k, v in fields.items()):
                    return index, event
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None or self._ended(), timeout):
                self._fail(f"no {name} {fields or ''} within {timeout}s")
            hit = found()
            if hit is None:
                self._fail(f"the daemon exited (code {self.proc.poll()}) before {name} {fields}")
            assert hit is not None
            return hit

    def wait_polls(self, count: int, *, after: int, timeout: float = WAIT_S) -> int:
        """Wait for `count` more `poll_completed` events after index `after`; the last's index."""
        index = after
        for _ in range(count):
            index, _event = self.wait_event("poll_completed", timeout, after=index + 1)
        return index

    def _ended(self) -> bool:
        return self._eof

    def _fail(self, message: str) -> None:
        tail = "\n".join(json.dumps(e) for e in self.events[-25:])
        stderr = self.stderr_path.read_text(errors="replace")[-3000:]
        pytest.fail(f"{message}\nlast events:\n{tail}\nstderr:\n{stderr}")

    def named(self, name: str, **fields: Any) -> list[Event]:
        """Every event `name` so far whose fields match."""
        with self._cond:
            return [
                e
                for e in self.events
                if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
            ]

    @property
    def position(self) -> int:
        """The number of events seen so far: pass it as `after` to wait for what comes next."""
        with self._cond:
            return len(self.events)

    # -- signals ---------------------------------------------------------------------------------

    def send(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """Send `signum` and wait (at most STOP_WITHIN_S) for the exit code."""
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            self._fail(f"still running {STOP_WITHIN_S}s after {signum.name}")
            raise

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Service:
    """One test's world: a simulator, a state directory, a config file, daemons to start."""

    sim: Simulator
    base_url: str
    directory: Path
    stack: ExitStack

    @property
    def config_path(self) -> Path:
        return self.directory / "config.yaml"

    def write_config(self, text: str | None = None, **kwargs: Any) -> Path:
        """Write the configuration file (`text`, or `config_text(...)` with `kwargs`)."""
        body = text if text is not None else config_text(self.base_url, self.directory, **kwargs)
        self.config_path.write_text(body)
        return self.config_path

    def start(
        self, *, watchdog_usec: int | None = WATCHDOG_USEC, env: Mapping[str, str] | None = None
    ) -> DaemonProcess:
        """Start `python -m watchdog run -c config.yaml` as systemd would."""
        notify = NotifySocket(self.directory)
        self.stack.callback(notify.close)
        environ = {
            k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))
        }
        environ.update({"NOTIFY_SOCKET": str(notify.path), "PYTHONUNBUFFERED": "1"})
        if watchdog_usec is not None:
            environ["WATCHDOG_USEC"] = str(watchdog_usec)
        environ.update(env or {})
        stderr_path = self.directory / f"stderr-{len(list(self.directory.glob('stderr-*')))}.txt"
        stderr = stderr_path.open("wb")
        self.stack.callback(stderr.close)
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "run", "-c", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=environ,
            cwd=self.directory,
        )
        self.stack.callback(_reap, proc)
        daemon = DaemonProcess(proc, notify, stderr_path)
        daemon.start_reader()
        return daemon

    def cancel_posts(self, uuid: str) -> int:
        """How many cancel requests for `uuid` the simulator accepted (answered 200)."""
        return sum(
            1
            for r in self.sim.requests
            if r.endpoint == "cancel" and r.status == 200 and r.path.endswith(f"/{uuid}/cancel")
        )


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


@contextmanager
def service(tmp_path: Path, fleet_data: Mapping[str, Any], **sim_kwargs: Any) -> Iterator[Service]:
    """A simulator serving `fleet_data` on loopback, and a place for the daemon's files."""
    with ExitStack() as stack:
        sim = Simulator(fleet_data, **sim_kwargs)
        server = stack.enter_context(sim.serve())
        yield Service(sim, server.base_url, tmp_path, stack)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET `url`: the status and the body, also for error statuses."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """The TCP (host, port) pairs process `pid` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found: list[tuple[str, int]] = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            host_hex, port_hex = local.split(":")
            raw = bytes.fromhex(host_hex)
            # /proc prints the address as native-endian 32-bit words.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, words), int(port_hex, 16)))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Check `predicate` every 50 ms until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.05)
