"""Fleet files, generated fleets and live mode."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from watchdog.errors import ConfigError
from watchdog.sim import Fleet, Simulator, generate_fleet, load_fleet
from watchdog.sim.schema import STATUSES, TERMINAL, parse_ts


def test_yaml_fleet_with_relative_and_absolute_times(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(
        """
tenant: tacc
users: {alice: pw}
token_ttl: 2h
cancel_delay: 5s
jobs:
  - {uuid: x-007, status: RUNNING, remoteStarted: "-13h"}
  - uuid: y-007
    status: FINISHED
    remoteStarted: "2024-05-01T10:00:00Z"
    ended: "2024-05-01T12:00:00.5Z"
""",
        encoding="utf-8",
    )
    fleet = load_fleet(path)
    assert (fleet.tenant, fleet.token_ttl, fleet.cancel_delay) == (
        "tacc",
        timedelta(hours=2),
        timedelta(seconds=5),
    )
    sim = Simulator(fleet)
    started = parse_ts(sim.job("x-007")["remoteStarted"])
    assert abs(sim.started - timedelta(hours=13) - started) < timedelta(seconds=1)
    assert sim.job("y-007")["ended"] == "2024-05-01T12:00:00.500000Z"
    assert sim.job("y-007")["tenant"] == "tacc"


def test_json_fleet(tmp_path):
    path = tmp_path / "fleet.json"
    path.write_text(
        json.dumps({"users": {"u": "p"}, "jobs": [{"status": "QUEUED"}]}), encoding="utf-8"
    )
    assert len(load_fleet(path).jobs) == 1


def test_unknown_keys_and_bad_values_name_their_path():
    with pytest.raises(ConfigError) as err:
        Fleet.from_dict(
            {
                "tenantt": "x",
                "cancel_delay": "soon",
                "live": {"tick": "1s", "speed": 2},
                "faults": [{"kind": "error", "status": 200}],
                "jobs": [
                    {"status": "RUNNING", "nodeCount": "four"},
                    {"cancel": "maybe"},
                    {"remoteStarted": "yesterday"},
                ],
            }
        )
    text = str(err.value)
    for fragment in (
        "tenantt: unknown key",
        "cancel_delay:",
        "live.speed: unknown key",
        "faults[0]: status",
        "jobs[0].nodeCount: expected an integer",
        "jobs[1].cancel:",
        "jobs[2].remoteStarted:",
    ):
        assert fragment in text


def test_unreadable_fleet_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read fleet"):
        load_fleet(tmp_path / "missing.yaml")


@pytest.mark.parametrize("status", sorted(STATUSES))
def test_synthesized_history_matches_status_and_times(status):
    sim = Simulator({"jobs": [{"uuid": "s-007", "status": status}]})
    job = sim.job("s-007")
    history = sim.history("s-007")
    assert history[0]["eventDetail"] == "PENDING"
    assert history[-1]["eventDetail"] == status
    times = [parse_ts(e["created"]) for e in history]
    assert times == sorted(times)
    assert times[0] == parse_ts(job["created"])
    assert (job["ended"] is not None) == (status in TERMINAL)
    if job["remoteStarted"]:
        assert parse_ts(job["remoteStarted"]) in times
    assert parse_ts(job["lastUpdated"]) >= times[-1] - timedelta(seconds=1)


def test_generated_fleet_is_realistic_and_reproducible():
    fleet = generate_fleet(2000, seed=3)
    assert fleet.jobs == generate_fleet(2000, seed=3).jobs
    assert fleet.jobs != generate_fleet(2000, seed=4).jobs
    sim = Simulator(fleet)
    statuses = [sim.job(u)["status"] for u in sim.uuids()]
    active = sum(s not in TERMINAL for s in statuses)
    assert active > len(statuses) * 0.7
    apps = {sim.job(u)["appId"] for u in sim.uuids()[:500]}
    assert {"opensees-mp-s3", "adcirc", "namd", "lammps"} <= apps
    assert any(".tmp" in sim.job(u)["fileInputs"] for u in sim.uuids())
    with pytest.raises(ValueError, match="100000"):
        generate_fleet(100_001)


def test_live_mode_moves_jobs_along_and_adds_new_ones():
    fleet = {
        "live": {"tick": "10s", "advance": 1.0, "running_advance": 1.0, "fail": 0.0, "arrivals": 1},
        "jobs": [
            {"uuid": "p-007", "status": "PENDING"},
            {"uuid": "pin-007", "status": "STAGING_INPUTS", "live": False},
        ],
    }
    sim = Simulator(fleet, live=True)
    sim.advance(10)
    assert sim.job("p-007")["status"] == "PROCESSING_INPUTS"
    sim.advance(70)
    job = sim.job("p-007")
    assert job["status"] == "FINISHED"
    assert [e["eventDetail"] for e in sim.history("p-007")][-3:] == [
        "RUNNING",
        "ARCHIVING",
        "FINISHED",
    ]
    assert parse_ts(job["remoteStarted"]) < parse_ts(job["ended"])
    assert sim.job("pin-007")["status"] == "STAGING_INPUTS"
    assert len(sim.uuids()) == 2 + 8


def test_not_live_nothing_moves():
    sim = Simulator({"jobs": [{"uuid": "p-007", "status": "PENDING"}]})
    sim.advance(3600)
    assert sim.job("p-007")["status"] == "PENDING"
    assert len(sim.uuids()) == 1
