"""The systemd notification protocol (`sd_notify`), spoken directly on `$NOTIFY_SOCKET`.

systemd passes the address of a datagram socket in `NOTIFY_SOCKET` (a path, or an abstract socket
written with a leading `@`) to a `Type=notify` service. The service sends newline-separated
`KEY=value` fields in one datagram: `READY=1` once it works, `WATCHDOG=1` as a keep-alive at least
every `WATCHDOG_USEC / 2`, `STATUS=` for `systemctl status`, `RELOADING=1` and `STOPPING=1`.

Notifications are best effort: nothing here raises or logs because of a failed send (the service
must keep working when systemd is not listening); every send returns whether it went out. Outside
systemd (`NOTIFY_SOCKET` unset) the notifier is disabled and every call is a cheap no-op.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

_USEC = 1_000_000


def _socket_address(value: str) -> str | None:
    """The `AF_UNIX` address for a `NOTIFY_SOCKET` value, or None for kinds we do not speak."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # Linux abstract namespace: a leading NUL byte instead of systemd's "@".
        return "\0" + value[1:]
    # vsock: and other transports are for VMs and containers, not for this service.
    return None


def _one_line(value: str | int) -> str:
    # A newline inside a value would start a new field and could forge one (e.g. READY=1).
    return str(value).replace("\r", " ").replace("\n", " ")


class SystemdNotifier:
    """Sends `sd_notify` messages to systemd; a disabled no-op when not started by systemd.

    Build it with `from_env()`. Every method returns True when the datagram was sent and False when
    the notifier is disabled or the send failed; none of them raises or blocks.
    """

    def __init__(
        self,
        notify_socket: str | None,
        *,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
    ) -> None:
        """Use `notify_socket` (a `NOTIFY_SOCKET` value; None disables) and the watchdog settings.

        `watchdog_usec` and `watchdog_pid` are the raw `WATCHDOG_USEC` / `WATCHDOG_PID` values.
        """
        self._address = _socket_address(notify_socket) if notify_socket else None
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SystemdNotifier:
        """Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment."""
        return cls(
            environ.get("NOTIFY_SOCKET"),
            watchdog_usec=environ.get("WATCHDOG_USEC"),
            watchdog_pid=environ.get("WATCHDOG_PID"),
        )

    @property
    def enabled(self) -> bool:
        """True when systemd gave a notify socket this notifier can reach."""
        return self._address is not None

    def notify(self, message: str | None = None, /, **fields: str | int) -> bool:
        """Send a raw message (`"READY=1\\nSTATUS=ok"`) and/or fields (`READY=1, STATUS="ok"`).

        Field values are flattened to one line each. Returns False when disabled, when there is
        nothing to send, or when the send failed.
        """
        parts = [message] if message else []
        parts.extend(f"{key}={_one_line(value)}" for key, value in fields.items())
        if not parts or self._address is None:
            return False
        return self._send("\n".join(parts).encode())

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd the service is up (`READY=1`), optionally with a status line."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def watchdog(self) -> bool:
        """Keep the watchdog from firing (`WATCHDOG=1`)."""
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        """Set the one-line status shown by `systemctl status` (`STATUS=`)."""
        return self.notify(STATUS=text)

    def reloading(self) -> bool:
        """Announce a configuration reload (`RELOADING=1`, `MONOTONIC_USEC=`); `ready()` ends it."""
        # systemd (253+) matches the reload to its own clock: CLOCK_MONOTONIC in microseconds.
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=now_usec)

    def stopping(self) -> bool:
        """Announce an orderly shutdown (`STOPPING=1`)."""
        return self.notify(STOPPING=1)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before a start or stop timeout fires (`EXTEND_TIMEOUT_USEC=`)."""
        return self.notify(EXTEND_TIMEOUT_USEC=max(0, int(seconds * _USEC)))

    def watchdog_interval(self) -> float | None:
        """How often to send `watchdog()`, in seconds: half of `WATCHDOG_USEC`.

        None when systemd set no watchdog, when the value is not a positive integer, or when
        `WATCHDOG_PID` names another process (the watchdog is then not ours to feed).
        """
        if self._watchdog_pid is not None:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec or "")
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / _USEC / 2

    def _send(self, payload: bytes) -> bool:
        address = self._address
        if address is None:
            return False
        # One socket per message, like libsystemd: nothing to keep open, close or share across
        # threads, and a message goes out once per poll at most.
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A full receive queue must not stall the poll loop: fail the send instead.
                sock.setblocking(False)  # noqa: FBT003 - socket's own positional API
                return sock.sendto(payload, address) == len(payload)
        except OSError:
            return False
