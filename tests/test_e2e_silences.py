"""End to end: silences, on simulated fleets the daemon has not seen.

Silences are added with the real command (`python -m watchdog silence ...`, a subprocess, no
Tapis call), and the daemon runs `run --once` in this process against the simulator over real
HTTP through real tapipy; each run is a fresh daemon on the same state store, so every run after
the first is also a restart. The running-daemon test (a reload, the next poll without one, the
metric) is in `test_service_silences.py`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from test_e2e_harness import (
    BOB,
    LONG_RUN,
    USER,
    Tenant,
    TenantFactory,
    base_fleet,
    check_event_fields,
    jobs_of,
    named,
    one,
)

from watchdog.jobs import format_timestamp
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from test_e2e_harness import Event

pytestmark = pytest.mark.anyio


def silence(t: Tenant, *args: str) -> dict[str, Any]:
    """`silence add ARGS --json` as a person runs it; returns the silence it printed."""
    done = t.command("silence", "add", *args, "--json", "-c", str(t.config_path))
    assert done.returncode == 0, done.stderr
    added: dict[str, Any] = json.loads(done.stdout)
    return added


def listed(t: Tenant) -> list[str]:
    """The ids `silence list` shows."""
    done = t.command("silence", "list", "--json", "-c", str(t.config_path))
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["silence_id"] for line in done.stdout.splitlines()]


def ago(hours: float) -> str:
    return format_timestamp(datetime.now(UTC) - timedelta(hours=hours))


def skipped_silenced(events: list[Event], uuid: str) -> Event:
    return one(events, "job_cancel_skipped", job_uuid=uuid, why="silenced")


# -- by uuid, before the rule fires ---------------------------------------------------------------


async def test_a_job_silenced_before_its_rule_fires_is_not_cancelled(
    tenant: TenantFactory,
) -> None:
    jobs = [
        {"name": "spared", "status": "RUNNING", "remoteStarted": "-11h"},
        {"name": "plain", "status": "RUNNING", "remoteStarted": "-11h"},
    ]
    t = tenant(base_fleet(jobs))
    t.write_config([LONG_RUN])
    spared, plain = t.uuid("spared"), t.uuid("plain")
    first = await t.run_once()
    assert not named(first, "rule_matched")

    added = silence(t, spared, "--for", "2h", "--reason", "converging, two more hours")
    assert listed(t) == [added["silence_id"]]
    for uuid in (spared, plain):  # both now run past the rule's 12 hours
        t.sim.update_job(uuid, created=ago(14), remoteStarted=ago(13))

    second = await t.run_once()
    check_event_fields(second)
    assert t.posts("cancel") == [plain]
    skipped = skipped_silenced(second, spared)
    assert skipped["rule"] == "long-run"
    assert skipped["silence_id"] == added["silence_id"]
    assert skipped["silenced_by"] == added["by"]
    assert skipped["silence_reason"] == "converging, two more hours"
    assert skipped["silenced_until"] == added["expires_at"][:19] + "Z"
    assert added["silence_id"] in skipped["reason"]
    assert jobs_of(second, "job_cancelled") == {plain}
    assert t.sim.job(spared)["status"] == "RUNNING"
    # A restart: still spared, and the skip is not logged again for the same silence.
    t.sim.clear_requests()
    third = await t.run_once()
    assert t.posts("cancel") == []
    assert not named(third, "job_cancel_skipped")
    assert not named(third, "job_cancel_requested")


async def test_a_silenced_job_is_spared_in_a_dry_run_too(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "spared", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    spared = t.uuid("spared")
    create_store(t)
    silence(t, spared, "--for", "1h", "--reason", "checking")
    events = await t.run_once(dry_run=True)
    assert skipped_silenced(events, spared)["dry_run"] is True
    assert not named(events, "job_cancel_skipped", why="dry_run")


def create_store(t: Tenant) -> None:
    """Create the state store as a first daemon run would (the command refuses a missing one)."""
    StateStore.open(t.state_path).close()


# -- expiry, then the cancel ----------------------------------------------------------------------


async def test_when_the_silence_expires_the_next_poll_cancels(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "spared", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    spared = t.uuid("spared")
    create_store(t)
    added = silence(t, spared, "--for", "2s", "--reason", "a short look")
    first = await t.run_once()
    assert skipped_silenced(first, spared)["silence_id"] == added["silence_id"]
    assert t.posts("cancel") == []
    assert listed(t) == [added["silence_id"]]

    expires = datetime.fromisoformat(added["expires_at"])
    await anyio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds() + 0.2))
    assert listed(t) == []  # `silence list` shows it until it expires, then no more
    second = await t.run_once()
    check_event_fields(second)
    expired = one(second, "silence_expired")
    assert expired["silence_id"] == added["silence_id"]
    assert "ended_by" not in expired
    names = [e["event"] for e in second]
    assert names.index("silence_expired") < names.index("job_cancel_requested")
    requested = one(second, "job_cancel_requested", job_uuid=spared)
    assert f"silence {added['silence_id']} spared it and is over" in requested["reason"]
    assert one(second, "job_cancelled", job_uuid=spared)["final_status"] == "CANCELLED"
    assert t.posts("cancel") == [spared]
    # The expiry is logged once, whatever the restarts.
    third = await t.run_once()
    assert not named(third, "silence_expired")


async def test_a_silence_expired_by_hand_lets_the_cancel_happen(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "spared", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    spared = t.uuid("spared")
    create_store(t)
    added = silence(t, spared, "--for", "6h", "--reason", "maybe")
    await t.run_once()
    done = t.command(
        "silence", "expire", added["silence_id"], "--by", "pi", "-c", str(t.config_path)
    )
    assert done.returncode == 0, done.stderr
    events = await t.run_once()
    assert not named(events, "silence_expired")  # the command logged it, in the audit trail
    assert t.posts("cancel") == [spared]
    history = t.command("history", "--json", "-c", str(t.config_path))
    trail = [json.loads(line) for line in history.stdout.splitlines()]
    expired = one(trail, "silence_expired")
    assert (expired["silence_id"], expired["ended_by"], expired["by"]) == (
        added["silence_id"],
        "pi",
        added["by"],
    )
    assert one(trail, "silence_added")["reason"] == "maybe"
    # The report names it too: who silenced what, why, and who ended it.
    report = t.command("report", "-c", str(t.config_path))
    assert report.returncode == 0, report.stderr
    line = next(x for x in report.stdout.splitlines() if added["silence_id"] in x)
    assert f"spares uuid {spared} from every cancel, by {added['by']} (maybe); ended" in line
    assert line.endswith("by pi")


# -- by owner, by rule ----------------------------------------------------------------------------


async def test_a_silence_by_owner_spares_exactly_that_owners_jobs(tenant: TenantFactory) -> None:
    over = {"status": "RUNNING", "remoteStarted": "-13h"}
    jobs: list[dict[str, Any]] = [
        {"name": "alice-1", **over},
        {"name": "alice-2", **over},
        {"name": "bob-1", "owner": BOB, "shared_with": [USER], **over},
        {"name": "bob-2", "owner": BOB, "shared_with": [USER], **over},
    ]
    t = tenant(base_fleet(jobs))
    t.write_config([LONG_RUN], poll={"list_type": "ALL_JOBS"})
    create_store(t)
    added = silence(t, "--owner", BOB, "--for", "1h", "--reason", "bob's sweep", "--by", "pi")
    events = await t.run_once()
    check_event_fields(events)
    bobs, alices = t.uuids("bob-1", "bob-2"), t.uuids("alice-1", "alice-2")
    assert jobs_of(events, "job_cancel_skipped", why="silenced") == bobs
    assert {e["silence_id"] for e in named(events, "job_cancel_skipped")} == {added["silence_id"]}
    assert {e["silenced_by"] for e in named(events, "job_cancel_skipped")} == {"pi"}
    assert sorted(t.posts("cancel")) == sorted(alices)
    assert jobs_of(events, "job_cancelled") == alices


async def test_a_silence_for_one_rule_leaves_the_next_rule_to_act(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "big", "status": "RUNNING", "remoteStarted": "-13h"}]))
    second_rule = {**LONG_RUN, "name": "long-run-2"}
    t.write_config([LONG_RUN, second_rule])
    big = t.uuid("big")
    create_store(t)
    silence(t, big, "--rule", "long-run", "--for", "1h", "--reason", "rule under review")
    events = await t.run_once()
    assert skipped_silenced(events, big)["rule"] == "long-run"
    assert one(events, "job_cancel_requested", job_uuid=big)["rule"] == "long-run-2"
    assert t.posts("cancel") == [big]


# -- grace: warned with the command, running it spares the job ------------------------------------

GRACE_RULE: dict[str, Any] = {
    "name": "grace-run",
    "match": {"status": "RUNNING"},
    "when": {"runtime_over": "1h"},
    "grace": "2s",
    "action": "cancel",
}


def run_spare_command(t: Tenant, command: str, reason: str) -> subprocess.CompletedProcess[str]:
    """Run the command a warning names, as its reader would (the reason filled in)."""
    words = shlex.split(command)
    assert words[:3] == ["tapis-watchdog", "silence", "add"]
    words = [reason if w == "..." else w for w in words]
    return subprocess.run(  # noqa: PLW1510 - the caller checks
        [sys.executable, "-m", "watchdog", *words[1:]],
        capture_output=True,
        text=True,
        env=t.env(),
        timeout=45,
        cwd=t.tmp_path,
    )


async def test_the_grace_warning_names_the_command_and_running_it_spares_the_job(
    tenant: TenantFactory,
) -> None:
    jobs = [
        {"name": "warned", "status": "RUNNING", "remoteStarted": "-2h"},
        {"name": "other", "status": "RUNNING", "remoteStarted": "-2h"},
    ]
    t = tenant(base_fleet(jobs))
    t.write_config([GRACE_RULE])
    warned, other = t.uuid("warned"), t.uuid("other")
    first = await t.run_once()
    warning = one(first, "job_warned", job_uuid=warned)
    command = warning["spare_command"]
    assert command == (
        f'tapis-watchdog silence add {warned} --for 2h --reason "..." -c {t.config_path}'
    )
    cancel_at = datetime.fromisoformat(warning["cancel_at"])
    assert f"cancel at {warning['cancel_at']}" in warning["reason"]
    assert timedelta(0) < cancel_at - datetime.now(UTC) <= timedelta(seconds=3)
    notes = [e for e in t.sim.history(warned) if e["event"] == "JOB_USER_EVENT"]
    assert len(notes) == 1
    assert command in notes[0]["description"]
    assert warning["cancel_at"] in notes[0]["description"]

    done = run_spare_command(t, command, "it is fine, I am watching it")
    assert done.returncode == 0, done.stderr
    await anyio.sleep(max(0.0, (cancel_at - datetime.now(UTC)).total_seconds() + 0.2))
    second = await t.run_once()
    check_event_fields(second)
    skipped = skipped_silenced(second, warned)
    assert skipped["silence_reason"] == "it is fine, I am watching it"
    assert t.posts("cancel") == [other]
    assert jobs_of(second, "job_cancelled") == {other}


async def test_grace_keeps_running_under_a_silence_and_acts_when_it_ends(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet([{"name": "warned", "status": "RUNNING", "remoteStarted": "-2h"}]))
    t.write_config([{**GRACE_RULE, "grace": "3s"}])
    warned = t.uuid("warned")
    create_store(t)
    added = silence(t, warned, "--for", "1s", "--reason", "short")
    first = await t.run_once()
    # Warned while silenced: the cancel comes after the grace (it outlasts the silence).
    warning = one(first, "job_warned", job_uuid=warned)
    assert added["silence_id"] in warning["reason"]
    cancel_at = datetime.fromisoformat(warning["cancel_at"])
    await anyio.sleep(max(0.0, (cancel_at - datetime.now(UTC)).total_seconds() + 0.2))
    second = await t.run_once()
    assert one(second, "silence_expired")["silence_id"] == added["silence_id"]
    assert not named(second, "job_cancel_skipped")
    assert t.posts("cancel") == [warned]
    assert len(named(first + second, "job_warned")) == 1


async def test_a_silence_outlasting_the_grace_delays_the_cancel_to_its_end(
    tenant: TenantFactory,
) -> None:
    t = tenant(base_fleet([{"name": "warned", "status": "RUNNING", "remoteStarted": "-2h"}]))
    t.write_config([{**GRACE_RULE, "grace": "1s"}])
    warned = t.uuid("warned")
    create_store(t)
    added = silence(t, warned, "--for", "3s", "--reason", "longer than the grace")
    first = await t.run_once()
    warning = one(first, "job_warned", job_uuid=warned)
    expires = datetime.fromisoformat(added["expires_at"])
    lag = datetime.fromisoformat(warning["cancel_at"]) - expires
    assert timedelta(0) <= lag < timedelta(seconds=1)
    await anyio.sleep(1.2)
    second = await t.run_once()  # grace over, silence not: spared
    assert skipped_silenced(second, warned)["silence_id"] == added["silence_id"]
    assert t.posts("cancel") == []
    await anyio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds() + 0.2))
    third = await t.run_once()  # the silence is over: the cancel happens at once
    assert one(third, "silence_expired")["silence_id"] == added["silence_id"]
    requested = one(third, "job_cancel_requested", job_uuid=warned)
    assert "spared it and is over" in requested["reason"]
    assert t.posts("cancel") == [warned]


# -- explain --------------------------------------------------------------------------------------


async def test_explain_shows_the_silence_in_force(tenant: TenantFactory) -> None:
    t = tenant(base_fleet([{"name": "spared", "status": "RUNNING", "remoteStarted": "-13h"}]))
    t.write_config([LONG_RUN])
    spared = t.uuid("spared")
    create_store(t)
    added = silence(t, spared, "--for", "1h", "--reason", "explained")
    done = t.command("explain", "-c", str(t.config_path), spared)
    assert done.returncode == 0, done.stderr
    assert f"silence {added['silence_id']} spares it from every cancel" in done.stdout
    assert "but silence" in done.stdout
    assert "would cancel by rule long-run, but" in done.stdout
    assert t.posts("cancel") == []
