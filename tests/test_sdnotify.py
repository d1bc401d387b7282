"""SystemdNotifier against real datagram sockets, as systemd would listen on them."""

from __future__ import annotations

import os
import select
import socket
import time
import uuid
from typing import TYPE_CHECKING

import pytest

from watchdog.service.sdnotify import SystemdNotifier

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class Listener:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        fields = dict(line.split("=", 1) for line in data.split("\n"))
        assert len(fields) == data.count("\n") + 1, f"repeated field in {data!r}"
        return fields

    def nothing_pending(self) -> bool:
        # Unix datagrams are queued by the time sendto() returns: no waiting needed.
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable


def _bound(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    return sock


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    if request.param == "path":
        path = str(tmp_path / "n")
        sock = _bound(path)
        env_value = path
    else:
        name = f"tapis-watchdog-test-{uuid.uuid4().hex}"
        sock = _bound("\0" + name)
        env_value = "@" + name
    with sock:
        yield Listener(sock, env_value)


def _notifier(listener: Listener, **env: str) -> SystemdNotifier:
    return SystemdNotifier.from_env({"NOTIFY_SOCKET": listener.env_value, **env})


def test_ready_with_status(listener: Listener) -> None:
    notifier = _notifier(listener)
    assert notifier.enabled
    assert notifier.ready("watching 12 jobs")
    assert listener.receive() == {"READY": "1", "STATUS": "watching 12 jobs"}


def test_ready_without_status(listener: Listener) -> None:
    assert _notifier(listener).ready()
    assert listener.receive() == {"READY": "1"}


def test_watchdog_status_stopping(listener: Listener) -> None:
    notifier = _notifier(listener)
    assert notifier.watchdog()
    assert listener.receive() == {"WATCHDOG": "1"}
    assert notifier.status("poll ok: 3 jobs, 0 cancels")
    assert listener.receive() == {"STATUS": "poll ok: 3 jobs, 0 cancels"}
    assert notifier.stopping()
    assert listener.receive() == {"STOPPING": "1"}


def test_reloading_carries_the_monotonic_clock(listener: Listener) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert _notifier(listener).reloading()
    fields = listener.receive()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert fields.keys() == {"RELOADING", "MONOTONIC_USEC"}
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_extend_timeout_in_microseconds(listener: Listener) -> None:
    assert _notifier(listener).extend_timeout(1.5)
    assert listener.receive() == {"EXTEND_TIMEOUT_USEC": "1500000"}


def test_raw_message_and_fields_in_one_datagram(listener: Listener) -> None:
    assert _notifier(listener).notify("READY=1", STATUS="up")
    assert listener.receive() == {"READY": "1", "STATUS": "up"}


def test_a_newline_in_a_value_cannot_forge_a_field(listener: Listener) -> None:
    assert _notifier(listener).status("bad job name\nREADY=1")
    assert listener.receive() == {"STATUS": "bad job name READY=1"}


def test_nothing_to_send_sends_nothing(listener: Listener) -> None:
    assert not _notifier(listener).notify()
    assert listener.nothing_pending()


def test_each_message_is_its_own_datagram(listener: Listener) -> None:
    notifier = _notifier(listener)
    assert notifier.watchdog()
    assert notifier.watchdog()
    assert listener.receive() == {"WATCHDOG": "1"}
    assert listener.receive() == {"WATCHDOG": "1"}


def test_disabled_without_notify_socket() -> None:
    notifier = SystemdNotifier.from_env({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.watchdog_interval() is None


def test_unsupported_transport_is_disabled() -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.ready()


def test_send_to_a_vanished_socket_returns_false(tmp_path: Path) -> None:
    path = tmp_path / "gone"
    _bound(str(path)).close()
    path.unlink()
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_full_receive_queue_does_not_block(tmp_path: Path) -> None:
    path = str(tmp_path / "q")
    with _bound(path):
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": path})
        results = [notifier.status("x" * 1024) for _ in range(5000)]
    assert results[0] is True
    assert results[-1] is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "300000000"}, 150.0),
        ({"WATCHDOG_USEC": "300000000", "WATCHDOG_PID": str(os.getpid())}, 150.0),
        ({"WATCHDOG_USEC": "300000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "300000000", "WATCHDOG_PID": "nope"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "5min"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", **env})
    assert notifier.watchdog_interval() == expected
