"""Synthetic fleets: many realistic jobs, weighted toward active statuses, reproducible by seed."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from watchdog.sim.fleet import Fleet
from watchdog.sim.schema import SYSTEMS

MAX_JOBS = 100_000
_APPS = (
    ("opensees-mp-s3", 30),
    ("opensees-sp", 10),
    ("adcirc", 20),
    ("namd", 15),
    ("lammps", 15),
    ("openfoam", 10),
)
_STATUSES = (
    ("RUNNING", 40),
    ("QUEUED", 25),
    ("PENDING", 3),
    ("PROCESSING_INPUTS", 2),
    ("STAGING_INPUTS", 4),
    ("STAGING_JOB", 2),
    ("SUBMITTING_JOB", 2),
    ("ARCHIVING", 3),
    ("BLOCKED", 2),
    ("FINISHED", 10),
    ("FAILED", 5),
    ("CANCELLED", 2),
)
_OWNERS = ("alice", "bob", "carol", "dave")
_BAD_INPUTS = (
    "tapis://designsafe.storage.default/{o}/tmp/scratch.tmp",
    "https://example.org/data/../../etc/passwd",
    "tapis://designsafe.storage.default/{o}/Trash/model.tcl",
)


def _minutes(rng: random.Random, low: int, high: int) -> str:
    return f"-{rng.randint(low, high)}m"


def _job(rng: random.Random, i: int) -> dict[str, Any]:
    app = rng.choices([a for a, _ in _APPS], [w for _, w in _APPS])[0]
    status = rng.choices([s for s, _ in _STATUSES], [w for _, w in _STATUSES])[0]
    owner = rng.choices(_OWNERS, (70, 15, 10, 5))[0]
    system = rng.choice(sorted(SYSTEMS))
    job: dict[str, Any] = {
        "status": status,
        "appId": app,
        "name": f"{app}-{i:06d}",
        "owner": owner,
        "execSystemId": system,
        "execSystemLogicalQueue": rng.choice(("normal", "development", "large", "small")),
        "nodeCount": rng.choice((1, 1, 1, 2, 4, 8, 16, 64)),
        "maxMinutes": rng.choice((30, 60, 120, 480, 1440, 2880)),
        "tags": rng.choice(([], [], ["overnight"], ["sweep", "batch-7"], ["watchdog-exempt"])),
    }
    wait = rng.randint(1, 48 * 60)
    if status in {"RUNNING", "ARCHIVING", "FINISHED"}:
        job["remoteStarted"] = _minutes(rng, 1, 36 * 60)
    if status == "QUEUED":
        job["remoteSubmitted"] = f"-{wait}m"
    if status in {
        "PENDING",
        "PROCESSING_INPUTS",
        "STAGING_INPUTS",
        "STAGING_JOB",
        "SUBMITTING_JOB",
        "BLOCKED",
    }:
        job["created"] = _minutes(rng, 1, 12 * 60)
    if status in {"FINISHED", "FAILED", "CANCELLED"}:
        job["ended"] = _minutes(rng, 0, 60)
        if status == "FINISHED":
            job["remoteStarted"] = _minutes(rng, 61, 40 * 60)
    inputs = [f"tapis://designsafe.storage.default/{owner}/projects/p{i % 97}/model-{i}.tcl"]
    if rng.random() < 0.03:
        inputs.append(rng.choice(_BAD_INPUTS).format(o=owner))
    job["inputs"] = inputs
    job["app_args"] = [f"-n {rng.randint(1, 500)}", f"--output out-{i}"]
    if rng.random() < 0.3:
        job["cancel_delay"] = f"{rng.randint(1, 5)}s"
    if rng.random() < 0.1:
        job["shared_with"] = [rng.choice(_OWNERS)]
    return job


def generate_fleet(n: int, seed: int = 0) -> Fleet:
    """A synthetic fleet of `n` jobs (at most 100,000) over four owners, the first `alice`.

    Raises:
        ValueError: `n` is negative or above 100,000.
    """
    if not 0 <= n <= MAX_JOBS:
        msg = f"n: expected 0 to {MAX_JOBS} jobs, got {n}"
        raise ValueError(msg)
    rng = random.Random(seed)  # noqa: S311 - reproducible fleets, not security
    jobs = tuple(_job(rng, i) for i in range(n))
    return Fleet(
        users={o: f"{o}-password" for o in _OWNERS},
        admins=("ops",),
        cancel_delay=timedelta(seconds=2),
        jobs=jobs,
    )
