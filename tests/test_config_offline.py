"""Commands that never talk to Tapis need no Tapis credentials; defaults follow what users wrote.

`load_offline_config` (check, test-rules, explain --job-file, history, silence) lets an unset
`${VAR}` or an unreadable `*_file` in the `tapis` section stand as a note; `load_config` (run,
cancel, explain UUID) still refuses it. Every other problem is an error for both.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from watchdog.cli import main
from watchdog.config.model import Config, load_config, load_offline_config
from watchdog.errors import ConfigError
from watchdog.state.store import StateStore

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.yaml"
NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, tapis: object, **extra: object) -> Path:
    path = tmp_path / "config.yaml"
    data = {"tapis": tapis, "rules": [{"name": "r", "when": {"age_over": "1h"}, "action": "warn"}]}
    path.write_text(yaml.safe_dump({**data, **extra}), encoding="utf-8")
    return path


def tapis(**keys: object) -> dict[str, object]:
    return {"base_url": "https://designsafe.tapis.io", "tenant_id": "designsafe", **keys}


# -- the loaders ----------------------------------------------------------------------------------


def test_the_example_loads_offline_without_credentials_and_says_what_is_missing() -> None:
    config = load_offline_config(EXAMPLE, env=NO_ENV)
    assert config.tapis is None
    assert config.tapis_deferred == (
        "tapis.username: environment variable TAPIS_USERNAME is not set",
        "tapis.password: environment variable TAPIS_PASSWORD is not set",
    )
    assert [rule.name for rule in config.rules][:2] == ["frontera-12h", "scratch-inputs"]
    with pytest.raises(ConfigError, match="TAPIS_USERNAME is not set"):
        load_config(EXAMPLE, env=NO_ENV)


def test_with_credentials_the_offline_load_resolves_the_identity_too() -> None:
    env = {"TAPIS_USERNAME": "alice", "TAPIS_PASSWORD": "pw"}
    config = load_offline_config(EXAMPLE, env=env)
    assert isinstance(config, Config)
    assert config.tapis is not None
    assert config.tapis.username == "alice"
    assert config.tapis_deferred == ()


@pytest.mark.parametrize(
    ("keys", "note"),
    [
        (
            {"username": "u", "password_file": "${CREDENTIALS_DIRECTORY}/tapis-password"},
            "tapis.password_file: environment variable CREDENTIALS_DIRECTORY is not set",
        ),
        (
            {"username": "u", "password_file": "/nonexistent/tapis-password"},
            'tapis.password_file: cannot read "/nonexistent/tapis-password"',
        ),
        (
            {"access_token_file": "empty-token"},
            "tapis.access_token_file: the file",
        ),
        ({"base_url": "${TAPIS_BASE_URL}", "access_token": "t"}, "TAPIS_BASE_URL is not set"),
    ],
)
def test_what_only_the_login_environment_has_is_a_note_offline(
    tmp_path: Path, keys: dict[str, object], note: str
) -> None:
    (tmp_path / "empty-token").write_text("", encoding="utf-8")
    path = write(tmp_path, tapis(**keys))
    config = load_offline_config(path, env=NO_ENV)
    assert config.tapis is None
    assert len(config.tapis_deferred) == 1
    assert note in config.tapis_deferred[0]
    with pytest.raises(ConfigError) as raised:
        load_config(path, env=NO_ENV)
    assert any(note in line for line in raised.value.problems)


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ({"username": "${TAPIS_USERNAME}", "passwrd": "x"}, "tapis.passwrd: unknown key"),
        ({"username": "${TAPIS_USERNAME}", "password": "p", "timeout": "soon"}, "tapis.timeout"),
        ({"password": "${TAPIS_PASSWORD}", "base_url": "designsafe"}, "tapis.base_url"),
        ({}, "give username with password"),
        ({"username": "u", "password": "p", "client_id": "c"}, "tapis.client_key: is required"),
    ],
)
def test_a_wrong_tapis_section_is_an_error_offline_too(
    tmp_path: Path, keys: dict[str, object], error: str
) -> None:
    path = write(tmp_path, tapis(**keys))
    with pytest.raises(ConfigError) as raised:
        load_offline_config(path, env=NO_ENV)
    assert any(error in line for line in raised.value.problems), raised.value.problems


def test_unset_variables_outside_the_tapis_section_stay_errors(tmp_path: Path) -> None:
    path = write(tmp_path, tapis(access_token="t"), state={"path": "${STATE_PATH}"})
    with pytest.raises(ConfigError, match=r"state\.path: environment variable STATE_PATH"):
        load_offline_config(path, env=NO_ENV)


def test_the_internal_field_cannot_be_written(tmp_path: Path) -> None:
    path = write(tmp_path, tapis(access_token="t"), tapis_deferred=["x"])
    with pytest.raises(ConfigError, match="tapis_deferred: unknown key"):
        load_offline_config(path, env=NO_ENV)


# -- the commands, in an environment without TAPIS_* ----------------------------------------------


@pytest.fixture
def no_tapis_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TAPIS_USERNAME", "TAPIS_PASSWORD", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_tapis_env")
def test_check_test_rules_explain_file_and_history_need_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check", "-c", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "not resolved here, needed by run, cancel and explain UUID" in out
    assert "TAPIS_USERNAME is not set" in out
    cases = REPO / "tests" / "cases" / "example-cases.yaml"
    assert main(["test-rules", "-c", str(EXAMPLE), str(cases)]) == 0
    assert " 0 failed" in capsys.readouterr().out
    job = tmp_path / "job.json"
    record = {
        "uuid": "j-007",
        "status": "RUNNING",
        "appId": "adcirc",
        "execSystemId": "frontera",
        "remoteStarted": "2026-11-27T01:00:00.000000Z",
        "created": "2026-11-27T00:00:00Z",
    }
    job.write_text(json.dumps(record), encoding="utf-8")
    now = "2026-11-27T14:00:00Z"
    assert main(["explain", "-c", str(EXAMPLE), "--job-file", str(job), "--now", now]) == 0
    assert "would cancel by rule frontera-12h" in capsys.readouterr().out
    StateStore.open(tmp_path / "watchdog-state.db").close()  # the example's default state.path
    assert main(["history", "-c", str(EXAMPLE)]) == 0
    assert "0 events since" in capsys.readouterr().out


@pytest.mark.usefixtures("no_tapis_env")
def test_commands_that_log_in_still_need_the_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for argv in (
        ["run", "-c", str(EXAMPLE), "--once"],
        ["explain", "-c", str(EXAMPLE), "some-uuid"],
        ["cancel", "-c", str(EXAMPLE), "some-uuid", "--yes"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "invalid configuration" in err
        assert "TAPIS_USERNAME is not set" in err
    assert not (tmp_path / "watchdog-state.db").exists()


# -- defaults that follow what the user wrote ------------------------------------------------------


@pytest.mark.parametrize(
    ("safety", "resend"),
    [
        ({"verify_timeout": "20s"}, timedelta(seconds=10)),
        ({"verify_timeout": "90s"}, timedelta(seconds=45)),
        ({"verify_timeout": "2m"}, timedelta(minutes=1)),
        ({"verify_timeout": "15m"}, timedelta(minutes=1)),
        ({}, timedelta(minutes=1)),
        ({"verify_timeout": "20s", "resend_after": "5s"}, timedelta(seconds=5)),
    ],
)
def test_resend_after_follows_a_short_verify_timeout(
    tmp_path: Path, safety: dict[str, str], resend: timedelta
) -> None:
    path = write(tmp_path, tapis(access_token="t"), safety=safety)
    config = load_config(path, env=NO_ENV)
    assert config.safety.resend_after == resend
    assert config.safety.resend_after < config.safety.verify_timeout


@pytest.mark.parametrize(
    ("safety", "field", "value"),
    [
        ({"resend_after": "20m"}, "verify_timeout", timedelta(minutes=40)),
        ({"resend_after": "5m"}, "verify_timeout", timedelta(minutes=15)),
        ({"max_cancels_per_poll": 80}, "max_cancels_per_hour", 80),
        ({"max_cancels_per_poll": 5}, "max_cancels_per_hour", 50),
        ({"max_cancels_per_poll": 80, "max_cancels_per_hour": 60}, "max_cancels_per_hour", 60),
    ],
)
def test_other_defaults_follow_what_was_written_beside_them(
    tmp_path: Path, safety: dict[str, object], field: str, value: object
) -> None:
    path = write(tmp_path, tapis(access_token="t"), safety=safety)
    assert getattr(load_config(path, env=NO_ENV).safety, field) == value


def test_a_resend_after_written_too_long_is_still_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path, tapis(access_token="t"), safety={"verify_timeout": "20s", "resend_after": "30s"}
    )
    with pytest.raises(ConfigError, match="resend_after: must be shorter than verify_timeout"):
        load_config(path, env=NO_ENV)
