"""The daemon's one HTTP listener (`metrics.listen`): a small WSGI router on a threaded server.

    HttpListener(host, port) ─► Routes ─► "/metrics"  prometheus_client's own WSGI app
                                       ├► "/healthz"  the health rule (Metrics.healthz_app)
                                       └► whatever else is mounted ("/", "/api/", ...)

`Routes` maps exact paths (`/metrics`) and prefixes (a path ending in `/` other than `/` itself,
such as `/api/`) to WSGI applications; anything else is 404. A HEAD request is answered by running
the application as a GET and dropping the body, so every route answers HEAD as HTTP says it should.
The server is the standard library's `wsgiref` with a thread per request, silent on stdout and
stderr (stdout belongs to the event log, and a scrape is not an event).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Self, TypeAlias
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]

WSGIApp: TypeAlias = "Callable[[dict[str, Any], StartResponse], Iterable[bytes]]"
"""A WSGI application (PEP 3333), as `prometheus_client.make_wsgi_app` returns."""

__all__ = ["HttpListener", "Routes", "WSGIApp", "parse_listen", "start_listener"]


def parse_listen(listen: str) -> tuple[str, int]:
    """Split `127.0.0.1:9469` or `[::1]:9469` into host and port.

    Raises:
        ValueError: not `host:port`, or the port is outside 0..65535.
    """
    host, sep, port_text = listen.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f'expected "host:port" such as "127.0.0.1:9469", got {listen!r}')
    if bracketed or ":" in host:
        try:
            ipaddress.IPv6Address(host if bracketed else "")
        except ValueError:
            msg = f'expected an IPv6 address in brackets such as "[::1]:9469", got {listen!r}'
            raise ValueError(msg) from None
    return host, int(port_text)


def _not_found(_environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    body = b"not found\n"
    start_response(
        "404 Not Found",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class Routes:
    """Path → WSGI application: exact paths, and prefixes that end in `/` (except `/` itself)."""

    def __init__(self) -> None:
        self._exact: dict[str, WSGIApp] = {}
        self._prefixes: dict[str, WSGIApp] = {}

    def mount(self, path: str, app: WSGIApp) -> None:
        """Serve `app` at `path`: `/metrics` exactly, `/api/` for everything under it.

        Raises:
            ValueError: `path` does not start with `/`, or something is already mounted there.
        """
        if not path.startswith("/"):
            raise ValueError(f"a route starts with '/': {path!r}")
        table = self._prefixes if path.endswith("/") and path != "/" else self._exact
        if path in table:
            raise ValueError(f"a route is already mounted at {path!r}")
        table[path] = app

    @property
    def paths(self) -> tuple[str, ...]:
        """Every mounted path, sorted."""
        return tuple(sorted({*self._exact, *self._prefixes}))

    def resolve(self, path: str) -> WSGIApp:
        """The application for `path` (the longest matching prefix wins), or a 404 answer."""
        app = self._exact.get(path)
        if app is not None:
            return app
        best = max((p for p in self._prefixes if path.startswith(p)), key=len, default=None)
        return self._prefixes[best] if best is not None else _not_found

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        app = self.resolve(environ.get("PATH_INFO") or "/")
        if environ.get("REQUEST_METHOD") != "HEAD":
            return app(environ, start_response)
        body = app({**environ, "REQUEST_METHOD": "GET"}, start_response)
        try:
            for _chunk in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if callable(close):
                close()
        return []


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def get_stderr(self) -> Any:
        # wsgiref prints an application's traceback to stderr; the applications here catch their
        # own failures, and a stray traceback on the daemon's output helps nobody.
        return _Discard()


class _Discard:
    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class HttpListener:
    """Serves `routes` on `host:port` from a daemon thread; `routes` can gain paths at any time."""

    def __init__(self, host: str, port: int, routes: Routes | None = None) -> None:
        """Bind `host:port` (port 0: a free one) and start serving.

        Raises:
            OSError: the address cannot be bound (in use, not local, ...).
        """
        self.routes = routes if routes is not None else Routes()
        server_class = type(
            "ListenerServer",
            (_ThreadingWSGIServer,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        self._server: WSGIServer = server_class((host, port), _QuietHandler)
        self._server.set_app(self.routes)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="tapis-watchdog-http",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:9469`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening and wait up to `timeout` seconds for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_listener(listen: str, routes: Routes | None = None) -> HttpListener:
    """Serve `routes` at `listen` (`host:port`, `[::1]:port`).

    Raises:
        ValueError: `listen` is not `host:port`.
        OSError: the address cannot be bound (in use, not local, ...).
    """
    host, port = parse_listen(listen)
    return HttpListener(host, port, routes)
