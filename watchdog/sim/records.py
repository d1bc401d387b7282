"""Complete Tapis job records built from partial ones, with realistic defaults.

A fleet gives only the fields a test cares about; everything else gets the value Tapis would
send, in Tapis's own shapes: timestamps as `...Z` strings with microseconds, and `fileInputs`,
`parameterSet`, `notes`, `subscriptions`, `execSystemConstraints` as JSON strings.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from watchdog.jobs import format_timestamp as format_ts
from watchdog.sim.history import explicit_history
from watchdog.sim.schema import (
    ALL_FIELDS,
    BOOL_FIELDS,
    DEFAULT_CONDITIONS,
    INT_FIELDS,
    JSON_STRING_FIELDS,
    LIST_FIELDS,
    SIM_KEYS,
    STATUSES,
    SYSTEMS,
    TERMINAL,
    TIMESTAMP_FIELDS,
    resolve_time,
)

if TYPE_CHECKING:
    import random


def new_uuid(rng: random.Random) -> str:
    """A job UUID in Tapis's shape: a UUID4 with the `-007` jobs suffix."""
    return f"{uuidlib.UUID(int=rng.getrandbits(128), version=4)}-007"


def _json_string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _arg_list(items: Any) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(items or ()):
        if isinstance(item, Mapping):
            out.append({"name": None, "description": None, "include": None, "notes": None, **item})
        else:
            out.append(
                {
                    "name": f"arg{i}",
                    "description": None,
                    "include": None,
                    "arg": str(item),
                    "notes": "{}",
                }
            )
    return out


def _file_inputs(items: Any) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(items or ()):
        base: dict[str, Any] = {
            "name": f"input{i}",
            "description": None,
            "envKey": f"INPUT{i}",
            "autoMountLocal": True,
            "sourceUrl": None,
            "targetPath": None,
            "notes": "{}",
            "optional": False,
            "srcSharedAppCtx": "",
            "destSharedAppCtx": "",
        }
        if isinstance(item, Mapping):
            base.update(item)
        else:
            base["sourceUrl"] = str(item)
        if not base["targetPath"] and base["sourceUrl"]:
            base["targetPath"] = str(base["sourceUrl"]).rstrip("/").rsplit("/", 1)[-1]
        out.append(base)
    return out


def _tapis_env(rec: Mapping[str, Any], host: str, work_dir: str) -> list[dict[str, Any]]:
    created = rec["created"] or ""
    pairs = {
        "_tapisAppId": rec["appId"],
        "_tapisAppVersion": rec["appVersion"],
        "_tapisArchiveOnAppError": "true",
        "_tapisArchiveSystemDir": rec["archiveSystemDir"],
        "_tapisArchiveSystemId": rec["archiveSystemId"],
        "_tapisCoresPerNode": str(rec["coresPerNode"]),
        "_tapisDynamicExecSystem": "false",
        "_tapisEffectiveUserId": rec["owner"],
        "_tapisExecSystemExecDir": rec["execSystemExecDir"],
        "_tapisExecSystemHPCQueue": rec["execSystemLogicalQueue"] or "",
        "_tapisExecSystemId": rec["execSystemId"],
        "_tapisExecSystemInputDir": rec["execSystemInputDir"],
        "_tapisExecSystemLogicalQueue": rec["execSystemLogicalQueue"] or "",
        "_tapisExecSystemOutputDir": rec["execSystemOutputDir"],
        "_tapisJobCreateDate": created[:10] + "Z",
        "_tapisJobCreateTime": created[11:],
        "_tapisJobCreateTimestamp": created,
        "_tapisJobName": rec["name"],
        "_tapisJobOwner": rec["owner"],
        "_tapisJobUUID": rec["uuid"],
        "_tapisJobWorkingDir": work_dir,
        "_tapisMaxMinutes": str(rec["maxMinutes"]),
        "_tapisMemoryMB": str(rec["memoryMB"]),
        "_tapisNodes": str(rec["nodeCount"]),
        "_tapisSysHost": host,
        "_tapisSysRootDir": "/",
        "_tapisTenant": rec["tenant"],
    }
    return [
        {"key": k, "value": v, "description": None, "include": True, "notes": "{}"}
        for k, v in pairs.items()
    ]


def _parameter_set(
    partial: Mapping[str, Any], rec: Mapping[str, Any], host: str, work_dir: str
) -> str:
    given = partial.get("parameterSet")
    if isinstance(given, str):
        return given
    pset: dict[str, Any] = dict(given or {})
    pset.setdefault("appArgs", _arg_list(partial.get("app_args")))
    pset.setdefault("containerArgs", _arg_list(partial.get("container_args")))
    pset.setdefault("schedulerOptions", _arg_list(partial.get("scheduler_options")))
    env = list(pset.get("envVariables") or [])
    for key, value in (partial.get("env") or {}).items():
        env.append(
            {
                "key": str(key),
                "value": str(value),
                "description": None,
                "include": True,
                "notes": "{}",
            }
        )
    pset["envVariables"] = _tapis_env(rec, host, work_dir) + env
    pset.setdefault("archiveFilter", {"includes": [], "excludes": [], "includeLaunchFiles": True})
    pset.setdefault("logConfig", {"stdoutFilename": "", "stderrFilename": ""})
    return orjson.dumps(pset).decode()


def _fill_times(
    status: str, given: dict[str, datetime | None], now: datetime
) -> dict[str, datetime | None]:
    """Fill the missing timestamps so that they are ordered and consistent with the status."""
    on_remote = status in {"QUEUED", "RUNNING", "ARCHIVING", "FINISHED"}
    started = status in {"RUNNING", "ARCHIVING", "FINISHED"}
    if status in {"FAILED", "CANCELLED", "BLOCKED", "PAUSED"}:
        on_remote = (
            given.get("remoteSubmitted") is not None or given.get("remoteStarted") is not None
        )
        started = given.get("remoteStarted") is not None
    needed = {
        "created": True,
        "remoteSubmitted": on_remote,
        "remoteStarted": started,
        "remoteEnded": status in {"ARCHIVING", "FINISHED"} or (status in TERMINAL and started),
        "ended": status in TERMINAL,
    }
    order = list(needed)
    times: dict[str, datetime | None] = {k: given.get(k) for k in order}
    known = [t for t in times.values() if t is not None]
    if times["created"] is None:
        first = min(known) if known else now - timedelta(minutes=40)
        times["created"] = first - timedelta(minutes=5) if known else first
    for i, key in enumerate(order):
        if times[key] is not None or not needed[key]:
            continue
        prev = max(t for t in (times[k] for k in order[:i]) if t is not None)
        later = [t for t in (times[k] for k in order[i + 1 :]) if t is not None]
        limit = min([*later, now]) if later else now
        step = min(timedelta(minutes=3), max(limit - prev, timedelta(0)) / 2)
        times[key] = prev + step
    return times


def build_record(  # noqa: C901 - one default per field family
    partial: Mapping[str, Any],
    *,
    job_id: int,
    tenant: str,
    default_owner: str,
    now: datetime,
    start: datetime,
    rng: random.Random,
) -> tuple[dict[str, Any], list[tuple[str, datetime]] | None]:
    """Complete a partial job record; return it with its explicit history, if it has one.

    `parameterSet` stays None unless given as a string: `parameter_set` builds it on demand
    (it is the bulk of a record), and so does `history_from_record` for the history.

    Raises:
        ValueError: a field has a value of the wrong kind; the message names the field.
    """
    status = str(partial.get("status", "RUNNING"))
    if status not in STATUSES:
        msg = f"status: unknown job status {status!r}"
        raise ValueError(msg)
    uuid = str(partial.get("uuid") or new_uuid(rng))
    given: dict[str, datetime | None] = {}
    for key in TIMESTAMP_FIELDS:
        try:
            given[key] = resolve_time(partial.get(key), start)
        except ValueError as exc:
            msg = f"{key}: {exc}"
            raise ValueError(msg) from exc
    times = _fill_times(status, given, now)
    system = str(partial.get("execSystemId", rng.choice(sorted(SYSTEMS))))
    queue_default, work_root, _ = SYSTEMS.get(
        system, ("normal", "/scratch/00000", f"{system}.example.org")
    )
    owner = str(partial.get("owner", default_owner))
    work_dir = f"{work_root}/{owner}"
    app_id = str(partial.get("appId", "opensees-mp-s3"))
    created = times["created"]
    assert created is not None
    last_updated = given.get("lastUpdated") or max(t for t in times.values() if t is not None)
    remote = times["remoteSubmitted"] is not None
    rec: dict[str, Any] = dict.fromkeys(ALL_FIELDS)
    rec.update(
        {
            "id": job_id,
            "name": f"{app_id}-{uuid[:8]}",
            "owner": owner,
            "tenant": tenant,
            "description": f"{app_id} job submitted by {owner}",
            "status": status,
            "condition": DEFAULT_CONDITIONS.get(status),
            "lastMessage": f"Setting job status to {status}.",
            "uuid": uuid,
            "appId": app_id,
            "appVersion": "3.4.0",
            "archiveOnAppError": True,
            "dynamicExecSystem": False,
            "execSystemId": system,
            "execSystemExecDir": f"{work_dir}/tapis/{uuid}",
            "execSystemInputDir": f"{work_dir}/tapis/{uuid}",
            "execSystemOutputDir": f"{work_dir}/tapis/{uuid}/output",
            "execSystemLogicalQueue": queue_default,
            "archiveSystemId": "designsafe.storage.default",
            "archiveSystemDir": f"/{owner}/tapis-jobs-archive/{created:%Y-%m-%dZ}/{uuid}",
            "nodeCount": 1,
            "coresPerNode": 48,
            "memoryMB": 192000,
            "maxMinutes": 120,
            "fileInputs": "[]",
            "subscriptions": "[]",
            "blockedCount": 0,
            "remoteJobId": str(rng.randint(1_000_000, 9_999_999)) if remote else None,
            "remoteOutcome": {"FINISHED": "FINISHED", "FAILED": "FAILED"}.get(status),
            "remoteResultInfo": "0" if status == "FINISHED" else None,
            "remoteQueue": queue_default if remote else None,
            "remoteSubmitRetries": 0,
            "remoteChecksSuccess": rng.randint(1, 40) if times["remoteStarted"] else 0,
            "remoteChecksFailed": 0,
            "tapisQueue": "tapis.jobq.submit.DefaultQueue",
            "visible": True,
            "createdby": owner,
            "createdbyTenant": tenant,
            "tags": [],
            "jobType": "BATCH",
            "mpi": False,
            "mpiCmd": None,
            "cmdPrefix": None,
            "sharedAppCtx": False,
            "sharedAppCtxAttribs": [],
            "notes": "{}",
        }
    )
    for key, moment in times.items():
        rec[key] = format_ts(moment) if moment else None
    rec["lastUpdated"] = format_ts(last_updated)
    if times["remoteStarted"] is not None:
        check = (
            given.get("remoteLastStatusCheck")
            or times["remoteEnded"]
            or max(times["remoteStarted"], min(now, last_updated))
        )
        rec["remoteLastStatusCheck"] = format_ts(check)
    for key, value in partial.items():
        if key in SIM_KEYS or key in TIMESTAMP_FIELDS:
            continue
        if key not in rec:
            msg = f"{key}: not a field of a Tapis job record"
            raise ValueError(msg)
        rec[key] = _check_type(key, value)
    if "fileInputs" not in partial and partial.get("inputs"):
        rec["fileInputs"] = orjson.dumps(_file_inputs(partial["inputs"])).decode()
    if isinstance(partial.get("parameterSet"), str):
        rec["parameterSet"] = partial["parameterSet"]
    steps = explicit_history(partial.get("history"), start) if "history" in partial else None
    return rec, steps


def _check_type(key: str, value: Any) -> Any:
    if key in JSON_STRING_FIELDS:
        return _json_string(value)
    if key in INT_FIELDS and not (isinstance(value, int) and not isinstance(value, bool)):
        msg = f"{key}: expected an integer, got {value!r}"
        raise ValueError(msg)
    if key in BOOL_FIELDS and not isinstance(value, bool):
        msg = f"{key}: expected true or false, got {value!r}"
        raise ValueError(msg)
    if key in LIST_FIELDS:
        if not isinstance(value, list):
            msg = f"{key}: expected a list of strings, got {value!r}"
            raise ValueError(msg)
        return [str(v) for v in value]
    if value is not None and key not in INT_FIELDS | BOOL_FIELDS:
        return str(value)
    return value


def parameter_set(partial: Mapping[str, Any], rec: Mapping[str, Any]) -> str:
    """The `parameterSet` JSON string of a record: arguments, env (with `_tapis*`), filters."""
    _, work_root, host = SYSTEMS.get(
        rec["execSystemId"], ("normal", "/scratch/00000", f"{rec['execSystemId']}.example.org")
    )
    return _parameter_set(partial, rec, host, f"{work_root}/{rec['owner']}")
