"""A fast Tapis for benchmarks: the simulator, with job searches answered from memory.

The simulator filters and renders every page it serves (20-30 ms for a 500-record page), so a
poll against it hides its own parsing behind the server's work. A real Tapis answers a keyset
page from a database index much faster. This server is the simulator in every respect (tokens,
history, status, cancel, the control API and its request log) except `GET /v3/jobs/search`
ordered by uuid: each (user, listType, select, status.in) gets an index the first time it is
asked for, every record rendered once to JSON bytes in uuid order, and a page is a slice of it
found by bisection on the uuid conditions (`uuid.gt`, `uuid.gte`, `uuid.lt`), joined into the
simulator's own envelope. Any other search goes to the simulator unchanged, and so does every
search after the first cancel, hide or unhide (a cancelled job changes status later, on the
simulator's clock), so a job that changed is never served stale. Benchmarks run the daemon in
dry run, which sends none of them.

`startAfter=<uuid>` is read as a keyset cursor too, so a daemon that still pages that way can be
measured; Tapis itself answers it with 404 (see docs/tapis-conformance.md), the simulator does too.

Usage: .venv/bin/python bench/fast_tapis.py --fleet FILE [--port 0]
(the first stdout line is the simulator's: JSON with base_url, tenant_id, username, password).
"""

from __future__ import annotations

import argparse
import bisect
import json
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from watchdog.sim import api, listing
from watchdog.sim.fleet import load_fleet
from watchdog.sim.simulator import Outcome, Request, RequestRecord, Simulator
from watchdog.sim.tokens import TokenError, verify_jwt

_RESERVED = {"limit", "select", "listType", "orderBy", "computeTotal", "startAfter"}
_KEYSET = {"uuid.gt", "uuid.gte", "uuid.lt", "status.in"}
_ORDERS = {"uuid", "uuid(asc)"}
_CHANGES = {"cancel", "hide", "unhide"}


@dataclass(frozen=True, slots=True)
class _Index:
    """Every record one kind of search can answer, in uuid order, rendered once."""

    uuids: list[str]
    records: list[bytes]


class FastTapis(Simulator):
    """The simulator, but uuid-keyed searches come from pre-rendered records in memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._indexes: dict[tuple[str, str, str, str], _Index] = {}
        self._index_lock = threading.Lock()
        self._static = True

    def handle(self, request: Request) -> Outcome:
        if request.method == "GET" and request.path == "/v3/jobs/search":
            reply = self._fast_search(request)
            if reply is not None:
                self._log(request, reply)
                return Outcome(reply)
        outcome = super().handle(request)
        if request.method == "POST" and request.path.rpartition("/")[2] in _CHANGES:
            with self._index_lock:
                self._static = False
                self._indexes.clear()
        return outcome

    def _log(self, request: Request, reply: api.Reply) -> None:
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query=request.query,
            params={k: [v] for k, v in parse_qsl(request.query, keep_blank_values=True)},
            user=None,
            status=reply.status,
            endpoint="search",
            fault=None,
            time=datetime.now(UTC),
        )
        with self._lock:
            self._requests.append(record)

    def _fast_search(self, request: Request) -> api.Reply | None:
        """The page from memory, or None when this search is not one the index can answer."""
        pairs = parse_qsl(request.query, keep_blank_values=True)
        params = dict(pairs)
        if len(params) != len(pairs) or not set(params) <= _RESERVED | _KEYSET:
            return None
        if params.get("orderBy") not in _ORDERS or "status.in" not in params:
            return None
        try:
            claims = verify_jwt(request.headers.get("x-tapis-token"), key=self._key, now=self.now())
            limit = int(params.get("limit", "100"))
        except (TokenError, ValueError):
            return None
        user = str(claims["tapis/username"])
        tenant = str(claims["tapis/tenant_id"])
        list_type, select = params.get("listType", "MY_JOBS"), params.get("select", "")
        key = (user, list_type, select, params["status.in"])
        index = self._index(key, tenant)
        if index is None:
            return None
        uuids = index.uuids
        start, end = 0, len(uuids)
        after = params.get("uuid.gt") or params.get("startAfter")
        if after:
            start = max(start, bisect.bisect_right(uuids, after))
        if "uuid.gte" in params:
            start = max(start, bisect.bisect_left(uuids, params["uuid.gte"]))
        if "uuid.lt" in params:
            end = min(end, bisect.bisect_left(uuids, params["uuid.lt"]))
        end = max(start, end)
        stop = end if limit < 0 else min(end, start + limit)
        total = end - start if params.get("computeTotal", "").lower() == "true" else -1
        chosen = index.records[start:stop]
        meta = api._metadata(  # noqa: SLF001 - the simulator's own metadata shape
            len(chosen), limit, 0, "uuid(asc)", params.get("startAfter"), total
        )
        message = (
            f"JOBS_SEARCH_RESULT_LIST_RETRIEVED Jobs search list for the user {user} "
            f"in the tenant {tenant} retrieved."
        )
        return api.envelope(b"[" + b",".join(chosen) + b"]", message, metadata=meta)

    def _index(self, key: tuple[str, str, str, str], tenant: str) -> _Index | None:
        with self._index_lock:
            if not self._static:
                return None
            index = self._indexes.get(key)
            if index is not None:
                return index
            user, list_type, select, statuses = key
            caller = api.Caller(user, tenant, admin=user in self.fleet.admins)
            query = [("listType", list_type), ("status.in", statuses), ("limit", "-1")]
            if select:
                query.append(("select", select))
            with self._lock:
                reply = listing.search(self._store, caller, query)
            if reply.status != 200:
                return None
            records = sorted(orjson.loads(reply.body)["result"], key=lambda r: r["uuid"])
            index = _Index([r["uuid"] for r in records], [orjson.dumps(r) for r in records])
            self._indexes[key] = index
            return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fleet = load_fleet(args.fleet)
    sim = FastTapis(fleet)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with sim.serve("127.0.0.1", args.port) as server:
        username, password = fleet.first_user
        info = {
            "base_url": server.base_url,
            "tenant_id": sim.tenant_id,
            "username": username,
            "password": password,
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    main()
