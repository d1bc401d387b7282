"""HTTP/1.1 (keep-alive) transport for the simulator, plus its control API under `/_sim/`.

Control API (JSON, no token; loopback only):
    GET    /_sim/requests             the request log      DELETE /_sim/requests   clear it
    POST   /_sim/faults  {fault}      add a fault          DELETE /_sim/faults     clear them
    POST   /_sim/jobs    {partial}    add a job → {uuid}   GET    /_sim/jobs       every uuid
    GET    /_sim/jobs/{uuid}          the full record
    POST   /_sim/jobs/{uuid}/status   {status, condition}
    POST   /_sim/advance {seconds}    move the clock       POST   /_sim/token {username, ttl}
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from watchdog.sim.simulator import Outcome, Request, Simulator

if TYPE_CHECKING:
    from watchdog.sim.api import Reply


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay quiet: the request log is the record."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        sim = self.server.sim
        if parts.path.startswith("/_sim/"):
            self._send(control(sim, request))
            return
        outcome: Outcome = sim.handle(request)
        if outcome.delay and self.server.stopping.wait(outcome.delay):
            self._reset()
            return
        if outcome.reset:
            self._reset()
        elif outcome.hang is not None:
            self.server.stopping.wait(outcome.hang)
            self.close_connection = True
        elif outcome.reply is not None:
            self._send(outcome.reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        if reply.content_type is not None:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST: a real "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


class SimServer(ThreadingHTTPServer):
    """A threading HTTP server that can stop without leaving threads or sockets behind."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, sim: Simulator, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.sim = sim
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self._workers = [t for t in self._workers if t.is_alive()]
        self._workers.append(thread)
        thread.start()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, wake held connections, close every socket, join every thread."""
        self.stopping.set()
        self.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._workers:
            thread.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.server_close()


def _json(status: int, data: Any) -> Reply:
    from watchdog.sim.api import Reply  # noqa: PLC0415 - avoid a cycle at import time

    return Reply(status, orjson.dumps(data, default=str))


def control(sim: Simulator, request: Request) -> Reply:
    """Answer a `/_sim/...` control request."""
    try:
        return _control(sim, request)
    except (KeyError, ValueError, TypeError) as exc:
        return _json(400, {"error": str(exc)})


def _control(sim: Simulator, request: Request) -> Reply:  # noqa: C901, PLR0911 - a route table
    parts = request.path.strip("/").split("/")[1:]
    method = request.method
    data: Any = orjson.loads(request.body) if request.body else {}
    if parts == ["requests"] and method == "GET":
        return _json(
            200,
            [{**r.__dict__, "time": r.time.astimezone(UTC).isoformat()} for r in sim.requests],
        )
    if parts == ["requests"] and method == "DELETE":
        sim.clear_requests()
        return _json(200, {"cleared": True})
    if parts == ["faults"] and method == "POST":
        sim.set_fault(**data)
        return _json(201, {"faults": len(sim.faults.faults)})
    if parts == ["faults"] and method == "DELETE":
        sim.clear_faults()
        return _json(200, {"faults": 0})
    if parts == ["jobs"] and method == "POST":
        return _json(201, {"uuid": sim.add_job(data)})
    if parts == ["jobs"] and method == "GET":
        return _json(200, sim.uuids())
    if len(parts) == 2 and parts[0] == "jobs" and method == "GET":
        return _json(200, sim.job(parts[1]))
    if len(parts) == 3 and parts[0] == "jobs" and parts[2] == "status" and method == "POST":
        sim.set_status(parts[1], data["status"], data.get("condition"))
        return _json(200, {"status": data["status"]})
    if parts == ["advance"] and method == "POST":
        sim.advance(float(data["seconds"]))
        return _json(200, {"now": sim.now().isoformat()})
    if parts == ["token"] and method == "POST":
        return _json(201, {"access_token": sim.mint_token(data["username"], data.get("ttl"))})
    return _json(404, {"error": f"no control endpoint {method} {request.path}"})
