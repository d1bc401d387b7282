"""The fleet: who may log in, how the simulated Tapis behaves, and which jobs it holds.

A fleet file is YAML or JSON::

    tenant: designsafe
    users: {alice: alice-pw, bob: bob-pw}
    admins: [ops]                 # tenant admins: may get/cancel anyone's job by UUID
    clients: {my-client: secret}  # OAuth clients; login with them also returns a refresh token
    token_ttl: 4h
    cancel_delay: 2s              # how long a cancel takes to land
    faults: [{kind: error, endpoint: search, count: 3}]
    live: {tick: 1s, advance: 0.3, fail: 0.03, arrivals: 0.2}
    jobs:
      - {status: RUNNING, appId: opensees-mp-s3, remoteStarted: -13h, nodeCount: 4}
      - {status: QUEUED, owner: bob, shared_with: [alice], cancel: ignore_first}

Unknown keys are errors that name their path. Job entries are partial Tapis job records (see
`watchdog.sim.records`), whose times may be offsets from the simulator's start (`-13h`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from watchdog.durations import parse_duration
from watchdog.errors import ConfigError
from watchdog.sim.faults import Fault
from watchdog.sim.records import build_record
from watchdog.sim.schema import CANCEL_MODES

_TOP_KEYS = frozenset(
    {"tenant", "users", "admins", "clients", "token_ttl", "cancel_delay", "faults", "live", "jobs"}
)
_LIVE_KEYS = frozenset(
    {"enabled", "tick", "advance", "running_advance", "fail", "arrivals", "max_jobs"}
)


@dataclass(frozen=True)
class LiveSettings:
    """How fast a live simulator moves jobs along: per tick, the chance that an active job
    advances (`running_advance` for RUNNING jobs), that an advance is a failure instead, and
    the expected number of new jobs (up to `max_jobs` jobs in all)."""

    enabled: bool = False
    tick: timedelta = timedelta(seconds=1)
    advance: float = 0.3
    running_advance: float = 0.05
    fail: float = 0.03
    arrivals: float = 0.2
    max_jobs: int = 1000


@dataclass(frozen=True)
class Fleet:
    """A validated fleet. Build it with `Fleet.from_dict`, `load_fleet` or `generate_fleet`."""

    tenant: str = "designsafe"
    users: Mapping[str, str] = field(default_factory=lambda: {"alice": "alice-password"})
    admins: tuple[str, ...] = ()
    clients: Mapping[str, str] = field(default_factory=dict)
    token_ttl: timedelta = timedelta(hours=4)
    cancel_delay: timedelta = timedelta(seconds=2)
    faults: tuple[Fault, ...] = ()
    live: LiveSettings = LiveSettings()
    jobs: tuple[Mapping[str, Any], ...] = ()

    @property
    def first_user(self) -> tuple[str, str]:
        return next(iter(self.users.items()))

    @classmethod
    def from_dict(  # noqa: C901, PLR0912 - one check per top-level key
        cls, data: Mapping[str, Any], *, source: str | None = None
    ) -> Fleet:
        """Validate fleet data (as read from YAML/JSON).

        Raises:
            ConfigError: every problem found, each naming its key path and bad value.
        """
        problems: list[str] = []
        if not isinstance(data, Mapping):
            raise ConfigError(
                [f"fleet: expected a mapping, got {type(data).__name__}"], source=source
            )
        problems += [
            f"{key}: unknown key; expected one of {sorted(_TOP_KEYS)}"
            for key in data
            if key not in _TOP_KEYS
        ]
        kwargs: dict[str, Any] = {}
        tenant = data.get("tenant", "designsafe")
        if not isinstance(tenant, str) or not tenant:
            problems.append(f"tenant: expected a tenant id, got {tenant!r}")
        kwargs["tenant"] = str(tenant)
        for key in ("users", "clients"):
            value = data.get(key)
            if value is None:
                continue
            if (
                not isinstance(value, Mapping)
                or not value
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            ):
                problems.append(
                    f"{key}: expected a non-empty mapping of name to secret, got {value!r}"
                )
            else:
                kwargs[key] = dict(value)
        admins = data.get("admins", [])
        if not isinstance(admins, list) or not all(isinstance(a, str) for a in admins):
            problems.append(f"admins: expected a list of usernames, got {admins!r}")
        else:
            kwargs["admins"] = tuple(admins)
        for key in ("token_ttl", "cancel_delay"):
            if key in data:
                try:
                    kwargs[key] = _duration(data[key])
                except ValueError as exc:
                    problems.append(f"{key}: {exc}")
        faults = []
        for i, item in enumerate(_list(data, "faults", problems)):
            try:
                faults.append(Fault.from_dict(item if isinstance(item, Mapping) else {"?": item}))
            except ValueError as exc:
                problems.append(f"faults[{i}]: {exc}")
        kwargs["faults"] = tuple(faults)
        if "live" in data:
            try:
                kwargs["live"] = _live(data["live"])
            except ValueError as exc:
                problems.append(f"live.{exc}")
        jobs = _list(data, "jobs", problems)
        users = kwargs.get("users") or cls().users
        now = datetime.now(UTC)
        rng = random.Random(0)  # noqa: S311 - defaults only need to be plausible
        for i, job in enumerate(jobs):
            problems += [
                f"jobs[{i}].{p}"
                for p in check_job(job, kwargs["tenant"], next(iter(users)), now, rng)
            ]
        kwargs["jobs"] = tuple(dict(j) for j in jobs if isinstance(j, Mapping))
        if problems:
            raise ConfigError(problems, source=source)
        return cls(**kwargs)


def check_job(job: Any, tenant: str, owner: str, now: datetime, rng: random.Random) -> list[str]:
    """The problems of one partial job record (empty when it is valid)."""
    if not isinstance(job, Mapping):
        return [f"expected a mapping (a partial job record), got {job!r}"]
    problems = []
    mode = job.get("cancel", "honour")
    if mode not in CANCEL_MODES:
        problems.append(f"cancel: expected one of {sorted(CANCEL_MODES)}, got {mode!r}")
    if "cancel_delay" in job:
        try:
            _duration(job["cancel_delay"])
        except ValueError as exc:
            problems.append(f"cancel_delay: {exc}")
    if not isinstance(job.get("live", True), bool):
        problems.append(f"live: expected true or false, got {job['live']!r}")
    shared = job.get("shared_with", [])
    if not isinstance(shared, list) or not all(isinstance(u, str) for u in shared):
        problems.append(f"shared_with: expected a list of usernames, got {shared!r}")
    try:
        build_record(job, job_id=1, tenant=tenant, default_owner=owner, now=now, start=now, rng=rng)
    except (ValueError, TypeError) as exc:
        problems.append(str(exc))
    return problems


def _list(data: Mapping[str, Any], key: str, problems: list[str]) -> Sequence[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        problems.append(f"{key}: expected a list, got {value!r}")
        return []
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and value.strip() == "0":
        return timedelta(0)
    return parse_duration(value)


def _live(value: Any) -> LiveSettings:
    if isinstance(value, bool):
        return LiveSettings(enabled=value)
    if not isinstance(value, Mapping):
        msg = f"live: expected a mapping, got {value!r}"
        raise ValueError(msg)  # noqa: TRY004 - reported as a fleet problem, like every other
    unknown = set(value) - _LIVE_KEYS
    if unknown:
        msg = f"{min(unknown)}: unknown key; expected one of {sorted(_LIVE_KEYS)}"
        raise ValueError(msg)
    kwargs: dict[str, Any] = {}
    for key, raw in value.items():
        if key == "tick":
            kwargs[key] = _duration(raw)
            if kwargs[key] <= timedelta(0):
                msg = f"tick: must be > 0, got {raw!r}"
                raise ValueError(msg)
        elif key == "enabled":
            kwargs[key] = bool(raw)
        elif key == "max_jobs":
            kwargs[key] = int(raw)
        else:
            number = float(raw)
            if number < 0 or (key != "arrivals" and number > 1):
                msg = f"{key}: expected a probability from 0 to 1, got {raw!r}"
                raise ValueError(msg)
            kwargs[key] = number
    return LiveSettings(**kwargs)


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet file (YAML, or JSON which is YAML too).

    Raises:
        ConfigError: the file cannot be read or is not a valid fleet.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError([f"cannot read fleet: {exc.strerror or exc}"], source=str(path)) from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError([f"cannot read fleet: {exc}"], source=str(path)) from exc
    return Fleet.from_dict(data or {}, source=str(path))


DEFAULT_FLEET: dict[str, Any] = {
    "tenant": "designsafe",
    "users": {"alice": "alice-password", "bob": "bob-password"},
    "admins": ["ops"],
    "jobs": [
        {"status": "RUNNING", "appId": "opensees-mp-s3", "execSystemId": "frontera",
         "remoteStarted": "-13h", "nodeCount": 4, "name": "overnight-sweep"},
        {"status": "RUNNING", "appId": "adcirc", "execSystemId": "stampede3",
         "remoteStarted": "-20m", "nodeCount": 2},
        {"status": "QUEUED", "appId": "namd", "execSystemId": "ls6", "remoteSubmitted": "-30h"},
        {"status": "STAGING_INPUTS", "appId": "lammps", "created": "-7h", "live": False},
        {"status": "RUNNING", "appId": "opensees-sp", "remoteStarted": "-1h",
         "inputs": ["tapis://designsafe.storage.default/alice/scratch.tmp"]},
        {"status": "RUNNING", "appId": "adcirc", "owner": "bob", "remoteStarted": "-2h",
         "shared_with": ["alice"]},
        {"status": "FINISHED", "appId": "namd", "remoteStarted": "-5h", "ended": "-3h"},
    ],
}  # fmt: skip
