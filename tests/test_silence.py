"""Silences: the store's table, the pure matching, and `tapis-watchdog silence add|list|expire`.

The commands run as real subprocesses (`python -m watchdog silence ...`) against a state store on
a real file; the configuration names a Tapis that does not exist, and nothing calls it.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from watchdog.config.model import load_offline_config
from watchdog.jobs import Job
from watchdog.rules.evaluate import Verdict
from watchdog.rules.plan import plan
from watchdog.rules.silence import (
    SilenceIndex,
    SpareHint,
    glob_matches_everything,
    grace_warning,
    silence_for,
    silenced_skip,
    spares,
)
from watchdog.service.daemon import spare_hint
from watchdog.service.metrics import Metrics
from watchdog.service.notify import build_message
from watchdog.state.silences import ID_ALPHABET, ID_LENGTH
from watchdog.state.store import MIGRATIONS, StateStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JOB_A = "0a1b2c3d-0000-4000-8000-00000000000a-007"
JOB_B = "0a1b2c3d-0000-4000-8000-00000000000b-007"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state.db") as s:
        yield s


def _add(store: StateStore, minutes: float = 60, **fields: Any) -> Any:
    base: dict[str, Any] = {
        "created_at": T0,
        "expires_at": at(minutes),
        "created_by": "alice",
        "reason": "needs two more hours",
    }
    return store.add_silence(**{**base, **fields})


# -- the store ------------------------------------------------------------------------------------


def test_a_silence_round_trips_with_a_short_unique_id(store: StateStore) -> None:
    added = _add(store, uuids=[JOB_A, JOB_A, JOB_B], rule="long-run")
    assert len(added.id) == ID_LENGTH
    assert set(added.id) <= set(ID_ALPHABET)
    again = store.silence(added.id)
    assert again == added
    assert again is not None
    assert again.uuids == (JOB_A, JOB_B)
    assert (again.created_by, again.reason, again.rule) == (
        "alice",
        "needs two more hours",
        "long-run",
    )
    ids = {_add(store).id for _ in range(200)}
    assert len(ids) == 200


def test_active_silences_are_those_between_creation_and_expiry(store: StateStore) -> None:
    short, long_ = _add(store, 10), _add(store, 120)
    assert [s.id for s in store.active_silences(at(5))] == [short.id, long_.id]
    assert [s.id for s in store.active_silences(at(10))] == [long_.id]
    assert store.active_silences(at(120)) == []
    assert store.active_silences(at(-1)) == []


def test_ending_a_silence_by_hand_stops_it_and_counts_as_logged(store: StateStore) -> None:
    silence = _add(store, 60)
    ended = store.end_silence(silence.id, at(5), "bob")
    assert ended is not None
    assert (ended.ended_by, ended.until, ended.expiry_logged) == ("bob", at(5), True)
    assert store.active_silences(at(6)) == []
    # Ending it again changes nothing; an unknown id is None.
    assert store.end_silence(silence.id, at(7), "carol") == ended
    assert store.end_silence("nosuch", at(7), "carol") is None
    assert store.claim_expired_silences(at(100)) == []


def test_each_expiry_is_claimed_once_across_reopens(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateStore.open(path) as s:
        first, second = _add(s, 10), _add(s, 20)
        assert s.claim_expired_silences(at(5)) == []
        assert [x.id for x in s.claim_expired_silences(at(15))] == [first.id]
    with StateStore.open(path) as s:
        assert [x.id for x in s.claim_expired_silences(at(25))] == [second.id]
        assert s.claim_expired_silences(at(30)) == []


def test_pruning_forgets_silences_ended_before_the_retention(store: StateStore) -> None:
    old, kept = _add(store, 10), _add(store, 600)
    assert store.prune(at(60)) >= 1
    assert store.silence(old.id) is None
    assert store.silence(kept.id) is not None


def test_a_store_of_the_first_schema_gains_the_silences_table(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with StateStore.open(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert _add(s).id


# -- matching -------------------------------------------------------------------------------------


def _job(uuid: str = JOB_A, owner: str = "alice", app: str = "opensees-mp-s3") -> Job:
    return Job(uuid=uuid, status="RUNNING", owner=owner, app_id=app)


@pytest.mark.parametrize(
    ("fields", "job", "rule", "expected"),
    [
        ({"uuids": [JOB_A]}, _job(), "r", True),
        ({"uuids": [JOB_A]}, _job(JOB_B), "r", False),
        ({"uuids": [JOB_B, JOB_A]}, _job(), "r", True),
        ({"owner": "bob"}, _job(owner="bob"), "r", True),
        ({"owner": "bob"}, _job(owner="bobby"), "r", False),
        ({"app": "opensees*"}, _job(), "r", True),
        ({"app": "opensees*"}, _job(app="adcirc"), "r", False),
        ({"app": "OpenSees*"}, _job(), "r", False),
        ({"uuids": [JOB_A], "rule": "r"}, _job(), "r", True),
        ({"uuids": [JOB_A], "rule": "r"}, _job(), "other", False),
        ({"owner": "alice", "app": "adcirc"}, _job(), "r", False),
        ({"rule": "r"}, _job(), "r", True),
        ({}, _job(), "r", True),
    ],
)
def test_a_silence_spares_a_job_when_every_selector_holds(
    store: StateStore, fields: dict[str, Any], job: Job, rule: str, expected: bool
) -> None:
    silence = _add(store, 60, **fields)
    assert spares(silence, job, rule, at(30)) is expected
    assert spares(silence, job, rule, at(60)) is False
    assert spares(silence, job, rule, at(-1)) is False


def test_the_longest_lasting_silence_is_named(store: StateStore) -> None:
    _add(store, 30, uuids=[JOB_A])
    longest = _add(store, 90, owner="alice")
    _add(store, 600, owner="bob")
    found = silence_for(_job(), "r", store.active_silences(at(1)), at(1))
    assert found == longest
    assert silence_for(_job(JOB_B, owner="carol"), "r", store.active_silences(at(1)), at(1)) is None


@pytest.mark.parametrize(
    ("pattern", "everything"), [("*", True), ("**", True), ("*s*", False), ("", False)]
)
def test_globs_that_match_everything(pattern: str, everything: bool) -> None:
    assert glob_matches_everything(pattern) is everything


# -- the command ----------------------------------------------------------------------------------


def _config(tmp_path: Path, **safety: Any) -> Path:
    data = {
        "tapis": {
            "base_url": "https://tacc.tapis.io",
            "tenant_id": "tacc",
            "username": "alice",
            "password": "${SILENCE_TEST_PASSWORD}",
        },
        "state": {"path": str(tmp_path / "state.db")},
        "safety": safety,
        "rules": [
            {"name": "long-run", "when": {"runtime_over": "12h"}, "action": "cancel"},
            {"name": "long-queue", "when": {"in_status_over": "2d"}, "action": "warn"},
        ],
    }
    path = tmp_path / "watchdog.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _run(
    config: Path, *args: str, user: str = "dana", password: str | None = "never-used"
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAPIS_", "SUDO_", "SILENCE_TEST_"))
    }
    env.update({"USER": user, "LOGNAME": user})
    if password is not None:
        env["SILENCE_TEST_PASSWORD"] = password
    return subprocess.run(  # noqa: PLW1510 - callers check the exit code
        [sys.executable, "-m", "watchdog", "silence", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=config.parent,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = _config(tmp_path)
    StateStore.open(tmp_path / "state.db").close()  # as the daemon leaves it
    return path


def test_add_list_expire_and_the_audit_trail(config: Path) -> None:
    added = _run(config, "add", JOB_A, "--for", "2h", "--reason", "needs two more hours")
    assert added.returncode == 0, added.stderr
    first_line = added.stdout.splitlines()[0]
    assert first_line.startswith("silence ")
    silence_id = first_line.split()[1].rstrip(":")
    assert f"spares uuid {JOB_A} from every cancel until" in first_line
    assert "by dana: needs two more hours" in first_line
    assert f"silence expire {silence_id} -c {config}" in added.stdout

    listed = _run(config, "list")
    assert listed.returncode == 0, listed.stderr
    assert silence_id in listed.stdout
    assert JOB_A in listed.stdout
    rows = [json.loads(line) for line in _run(config, "list", "--json").stdout.splitlines()]
    assert [(r["silence_id"], r["by"], r["uuids"], r["active"]) for r in rows] == [
        (silence_id, "dana", [JOB_A], True)
    ]

    expired = _run(config, "expire", silence_id, "--by", "erin")
    assert expired.returncode == 0, expired.stderr
    assert "expired by erin" in expired.stdout
    assert _run(config, "list").stdout.strip() == "no active silences"
    assert silence_id in _run(config, "list", "--expired").stdout
    again = _run(config, "expire", silence_id)
    assert again.returncode == 0
    assert "already ended" in again.stdout
    assert _run(config, "expire", "nosuch").returncode == 1

    with StateStore.open(config.parent / "state.db") as store:
        events = store.events_since(T0 - timedelta(days=3650))
    added_event, expired_event = events
    assert added_event["event"] == "silence_added"
    assert (added_event["silence_id"], added_event["by"], added_event["uuids"]) == (
        silence_id,
        "dana",
        [JOB_A],
    )
    assert added_event["reason"] == "needs two more hours"
    assert expired_event["event"] == "silence_expired"
    assert (expired_event["silence_id"], expired_event["ended_by"]) == (silence_id, "erin")


def test_add_by_owner_app_and_rule_with_an_author(config: Path) -> None:
    done = _run(
        config,
        "add",
        "--owner",
        "bob",
        "--app",
        "opensees*",
        "--rule",
        "long-run",
        "--for",
        "1d",
        "--reason",
        "sweep",
        "--by",
        "carol",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    silence = json.loads(done.stdout)
    assert (silence["owner"], silence["app"], silence["rule"], silence["by"]) == (
        "bob",
        "opensees*",
        "long-run",
        "carol",
    )
    created = datetime.fromisoformat(silence["created_at"])
    assert datetime.fromisoformat(silence["expires_at"]) - created == timedelta(days=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([JOB_A, "--for", "8d", "--reason", "x"], "longer than safety.max_silence (7d)"),
        ([JOB_A, "--for", "0s", "--reason", "x"], "--for: must be longer than 0s"),
        ([JOB_A, "--for", "soon", "--reason", "x"], "--for: expected a duration"),
        ([JOB_A, "--for", "1h", "--reason", " "], "--reason: say why"),
        (
            [JOB_A, "--for", "1h", "--reason", "x", "--rule", "nope"],
            "no rule or budget named 'nope'",
        ),
        (["not a uuid", "--for", "1h", "--reason", "x"], "not a job uuid"),
        ([JOB_A, "--for", "1h", "--reason", "x", "--all"], "drop --all"),
    ],
)
def test_add_refuses_bad_input_with_exit_2(config: Path, args: list[str], message: str) -> None:
    done = _run(config, "add", *args)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    with StateStore.open(config.parent / "state.db") as store:
        assert store.silences() == []


@pytest.mark.parametrize(
    "selectors", [[], ["--rule", "long-run"], ["--app", "*"]], ids=["none", "rule", "app-star"]
)
def test_a_silence_of_every_job_needs_all(config: Path, selectors: list[str]) -> None:
    args = [*selectors, "--for", "1h", "--reason", "maintenance"]
    refused = _run(config, "add", *args)
    assert refused.returncode == 2
    assert "would spare every job" in refused.stderr
    assert "--all" in refused.stderr
    done = _run(config, "add", *args, "--all", "--json")
    assert done.returncode == 0, done.stderr
    silence = json.loads(done.stdout)
    assert silence["matches"].startswith("every job")
    assert silence["app"] is None


def test_max_silence_is_configurable(tmp_path: Path) -> None:
    config = _config(tmp_path, max_silence="1h")
    StateStore.open(tmp_path / "state.db").close()
    assert _run(config, "add", JOB_A, "--for", "2h", "--reason", "x").returncode == 2
    assert _run(config, "add", JOB_A, "--for", "1h", "--reason", "x").returncode == 0


def test_without_a_state_store_nothing_is_created(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for args in (["add", JOB_A, "--for", "1h", "--reason", "x"], ["list"]):
        done = _run(config, *args)
        assert done.returncode == 1
        assert "no state store at" in done.stderr
    assert not (tmp_path / "state.db").exists()


def test_the_commands_need_no_tapis_credentials(config: Path) -> None:
    """The password variable is unset and nothing can reach Tapis: all three still work."""
    added = _run(config, "add", JOB_A, "--for", "1h", "--reason", "x", "--json", password=None)
    assert added.returncode == 0, added.stderr
    silence_id = json.loads(added.stdout)["silence_id"]
    assert silence_id in _run(config, "list", password=None).stdout
    assert _run(config, "expire", silence_id, password=None).returncode == 0


# -- the pure decision ----------------------------------------------------------------------------


def _verdict(rule: str, *, grace_s: float | None = None) -> Verdict:
    return Verdict(
        rule=rule,
        matched=True,
        action="cancel",
        reason="runtime 13h exceeds 12h",
        details=(),
        grace=None if grace_s is None else timedelta(seconds=grace_s),
        dry_run=False,
    )


def test_a_silenced_cancel_never_takes_the_place_of_a_rule_that_acts(store: StateStore) -> None:
    silence = _add(store, 60, rule="first")
    decided = plan([_verdict("first"), _verdict("second")], {}, at(1), silenced={"first": silence})
    assert [(s.verdict.rule, s.kind) for s in decided.steps] == [
        ("first", "silenced"),
        ("second", "cancel"),
    ]
    assert decided.winner is not None
    assert decided.winner.rule == "second"
    assert decided.silenced[0].silence == silence


def test_grace_keeps_running_under_a_silence_and_the_later_end_is_the_cancel_time(
    store: StateStore,
) -> None:
    long_silence, short_silence = _add(store, 60), _add(store, 1)
    verdict = _verdict("r", grace_s=600)
    under_long = plan([verdict], {"r": at(0)}, at(0.5), silenced={"r": long_silence})
    [step] = under_long.steps
    assert (step.kind, step.grace_until, step.cancel_at) == ("grace", at(10), at(60))
    under_short = plan([verdict], {"r": at(0)}, at(0.5), silenced={"r": short_silence})
    assert under_short.steps[0].cancel_at == at(10)
    # The grace is over, the silence is not: spared; with no silence: due.
    assert plan([verdict], {"r": at(0)}, at(11), silenced={"r": long_silence}).outcome == "none"
    assert plan([verdict], {"r": at(0)}, at(11)).outcome == "cancel"


def test_an_exempt_job_stays_exempt_under_a_silence(store: StateStore) -> None:
    decided = plan([_verdict("r")], {}, at(1), exempt=True, silenced={"r": _add(store)})
    assert decided.exempt
    assert decided.silenced == ()


def test_the_grace_warning_names_the_cancel_time_and_the_command(store: StateStore) -> None:
    silence = _add(store, 30)
    step = plan([_verdict("r", grace_s=600)], {"r": at(0)}, at(0), silenced={"r": silence}).steps[0]
    hint = SpareHint("/etc/tapis watchdog/c.yaml")
    reason, fields = grace_warning(step, JOB_A, hint)
    assert fields["cancel_at"] == "2026-03-01T12:30:00Z"
    assert fields["spare_command"] == (
        f'tapis-watchdog silence add {JOB_A} --for 2h --reason "..." '
        "-c '/etc/tapis watchdog/c.yaml'"
    )
    assert f"silence {silence.id} (by alice: needs two more hours)" in reason
    reason, fields = silenced_skip(replace(step, kind="silenced"))
    assert fields == {
        "silence_id": silence.id,
        "silenced_by": "alice",
        "silence_reason": "needs two more hours",
        "silenced_until": "2026-03-01T12:30:00Z",
    }


@pytest.mark.parametrize(
    ("env", "max_silence", "prefix", "duration"),
    [
        ({}, "7d", "", "2h"),
        ({"STATE_DIRECTORY": "/var/lib/tapis-watchdog"}, "7d", "STATE_DIRECTORY=", "2h"),
        ({}, "30m", "", "30m"),
    ],
)
def test_the_spare_command_finds_the_daemons_store(
    tmp_path: Path, env: dict[str, str], max_silence: str, prefix: str, duration: str
) -> None:
    path = _config(tmp_path, max_silence=max_silence)
    data = yaml.safe_load(path.read_text())
    if env:
        del data["state"]  # the path comes from STATE_DIRECTORY, as under systemd
    path.write_text(yaml.safe_dump(data))
    config = load_offline_config(path, env={"SILENCE_TEST_PASSWORD": "x", **env})
    hint = spare_hint(path, config, env)
    assert hint.command(JOB_A).startswith(f"{prefix}" + ("/var/lib/tapis-watchdog " if env else ""))
    assert f"--for {duration} " in hint.command(JOB_A)
    assert hint.command(JOB_A).endswith(f"-c {path}")


def test_notifications_and_metrics_carry_the_silence_fields() -> None:
    message = build_message(
        {
            "event": "job_warned",
            "job_uuid": JOB_A,
            "rule": "r",
            "reason": "x",
            "cancel_at": "2026-03-01T12:30:00Z",
            "spare_command": f"tapis-watchdog silence add {JOB_A} --for 2h",
        }
    )
    assert "Cancel at: 2026-03-01T12:30:00Z" in message.body
    assert f"To let it run: tapis-watchdog silence add {JOB_A} --for 2h" in message.body
    metrics = Metrics(60.0)
    metrics.observe_event({"event": "poll_completed", "jobs_seen": 3, "silences_active": 2})
    assert metrics.silences_active._value.get() == 2


def test_silence_events_reach_the_notification_targets_that_ask(tmp_path: Path) -> None:
    from test_service_notify import recorder  # noqa: PLC0415 - its local webhook

    with recorder() as hook:
        config = _config(tmp_path)
        data = yaml.safe_load(config.read_text())
        data["notify"] = [{"url": hook.url, "events": ["silence_added", "silence_expired"]}]
        config.write_text(yaml.safe_dump(data))
        StateStore.open(tmp_path / "state.db").close()
        added = _run(config, "add", JOB_A, "--for", "1h", "--reason", "night run", "--json")
        assert added.returncode == 0, added.stderr
        silence_id = json.loads(added.stdout)["silence_id"]
        assert _run(config, "expire", silence_id, "--by", "pi").returncode == 0
        titles = [b["title"] for b in hook.bodies]
        assert titles == [
            f"tapis-watchdog: silence added: silence {silence_id}",
            f"tapis-watchdog: silence expired: silence {silence_id}",
        ]
        body = hook.bodies[0]["message"]
        assert f"Matches: uuid {JOB_A}" in body
        assert "Reason: night run" in body
        assert "By: dana" in body


def test_the_poll_index_finds_the_same_silences_as_a_scan(store: StateStore) -> None:
    """`SilenceIndex` (uuid and owner buckets, app globs memoised) against the plain scan."""
    rng = random.Random(7)
    uuids = [f"job-{i}" for i in range(12)]
    owners, apps, rules = ["alice", "bob", "carol"], ["opensees-mp", "adcirc", "namd"], ["r", "q"]
    for _ in range(40):
        fields: dict[str, Any] = {}
        if rng.random() < 0.4:
            fields["uuids"] = rng.sample(uuids, rng.randint(1, 3))
        if rng.random() < 0.4:
            fields["owner"] = rng.choice(owners)
        if rng.random() < 0.4:
            fields["app"] = rng.choice(["opensees*", "adcirc", "*d*", "x*"])
        if rng.random() < 0.3:
            fields["rule"] = rng.choice(rules)
        _add(store, rng.randint(1, 120), **fields)
    silences = store.silences()
    index = SilenceIndex(silences, at(30))
    for uuid in uuids:
        for owner in owners:
            for app in apps:
                job = _job(uuid, owner=owner, app=app)
                expected = {
                    rule: found
                    for rule in rules
                    if (found := silence_for(job, rule, silences, at(30))) is not None
                }
                assert index.by_rule(job, rules) == expected, (uuid, owner, app)
