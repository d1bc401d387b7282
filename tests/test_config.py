from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.config.model import EVENTS, Config, load_config
from watchdog.errors import ConfigError
from watchdog.jobs import ACTIVE_STATUSES
from watchdog.rules.evaluate import compile_rules, describe_rule

ROOT = Path(__file__).resolve().parent.parent
ENV = {"TAPIS_USERNAME": "alice", "TAPIS_PASSWORD": "hunter2-secret"}
BASE: dict[str, Any] = {
    "tapis": {
        "base_url": "https://designsafe.tapis.io/",
        "tenant_id": "designsafe",
        "username": "${TAPIS_USERNAME}",
        "password": "${TAPIS_PASSWORD}",
    },
    "rules": [
        {
            "name": "frontera-12h",
            "match": {"app": ["opensees*", "adcirc"], "exec_system": "frontera"},
            "when": {"runtime_over": "12h"},
            "action": "cancel",
        },
        {"name": "stuck", "when": {"in_status_over": "6h"}, "action": "warn", "grace": "10m"},
    ],
}
DELETE = object()


def write(tmp_path: Path, data: Any, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def changed(path: str, value: Any) -> dict[str, Any]:
    """BASE with one key path (`rules.0.when.runtime_over`) set, or deleted with DELETE."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def problems_of(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data), env=ENV if env is None else env)
    assert caught.value.source == str(tmp_path / "config.yaml")
    return caught.value.problems


def test_base_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), env=ENV)
    assert isinstance(config, Config)
    assert config.source == str(tmp_path / "config.yaml")
    assert config.tapis.base_url == "https://designsafe.tapis.io"
    assert config.tapis.username == "alice"
    assert config.tapis.password is not None
    assert config.tapis.password.get_secret_value() == "hunter2-secret"
    assert config.tapis.timeout == timedelta(seconds=30)
    assert config.tapis.max_concurrency == 8
    assert config.poll.interval == timedelta(seconds=60)
    assert config.poll.page_size == 500
    assert config.poll.list_type == "MY_JOBS"
    assert config.poll.statuses == ACTIVE_STATUSES
    assert config.state.path == Path("watchdog-state.db")
    assert config.state.retention == timedelta(days=30)
    assert config.safety.dry_run is False
    assert (config.safety.max_cancels_per_poll, config.safety.max_cancels_per_hour) == (10, 50)
    assert config.safety.verify_timeout == timedelta(minutes=15)
    assert config.safety.resend_after == timedelta(minutes=1)
    assert config.safety.exempt.tags == ()
    assert config.metrics is None
    assert config.notify == ()
    assert [r.name for r in config.rules] == ["frontera-12h", "stuck"]
    assert config.rules[0].match.app == ("opensees*", "adcirc")
    assert config.rules[1].grace == timedelta(minutes=10)


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), env=ENV)
    with pytest.raises(ValueError, match="frozen"):
        config.poll.interval = timedelta(0)


def test_the_example_configuration_stays_valid() -> None:
    config = load_config(ROOT / "config.example.yaml", env=ENV)
    rules = compile_rules(config.rules)
    assert len(rules) >= 5
    summaries = [describe_rule(r) for r in rules]
    assert summaries[0] == (
        "frontera-12h: cancel RUNNING jobs of app opensees*|adcirc on frontera when runtime > 12h"
    )
    assert any(r.grace is not None and r.action == "warn" for r in rules)
    assert config.safety.exempt.tags
    assert config.metrics is not None
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9469)


def test_events_are_the_product_events() -> None:
    assert set(EVENTS) == {
        "watchdog_started",
        "watchdog_stopped",
        "config_reloaded",
        "config_reload_failed",
        "poll_completed",
        "poll_failed",
        "rule_matched",
        "job_warned",
        "job_cleared",
        "job_cancel_requested",
        "job_cancel_skipped",
        "job_cancelled",
        "job_cancel_unconfirmed",
        "job_cancel_failed",
        "circuit_opened",
        "circuit_closed",
        "tapis_error",
        "silence_added",
        "silence_expired",
        "budget_warned",
        "budget_exceeded",
        "budget_recovered",
    }
    assert len(EVENTS) == len(set(EVENTS))


R0 = "rules[0] (frontera-12h)"
ERROR_CASES = [
    ("poll.interval", "0s", 'poll.interval: must be > 0, got "0s"'),
    ("tapis.tenant_ids", "x", "tapis.tenant_ids: unknown key (did you mean tenant_id?)"),
    (
        "rules.0.when.runtime_over",
        "twelve hours",
        f'{R0}.when.runtime_over: expected a duration like "90m" or "12h", got "twelve hours"',
    ),
    ("rules.0.when.runtime_over", "0s", f'{R0}.when.runtime_over: must be > 0, got "0s"'),
    (
        "tapis.base_url",
        "designsafe.tapis.io",
        (
            'tapis.base_url: expected an http(s) URL like "https://designsafe.tapis.io", '
            'got "designsafe.tapis.io"'
        ),
    ),
    ("tapis.tenant_id", DELETE, "tapis.tenant_id: is required"),
    ("tapis.tenant_id", "  ", 'tapis.tenant_id: expected a non-empty string, got "  "'),
    ("tapis.timeout", "-5s", 'tapis.timeout: expected a duration like "90m" or "12h", got "-5s"'),
    ("tapis.max_concurrency", 0, "tapis.max_concurrency: must be > 0, got 0"),
    ("poll.page_size", "many", 'poll.page_size: expected a whole number, got "many"'),
    ("poll.page_size", True, "poll.page_size: expected a whole number, got true"),
    (
        "poll.list_type",
        "MINE",
        'poll.list_type: expected one of MY_JOBS, SHARED_JOBS, ALL_JOBS, got "MINE"',
    ),
    ("poll.statuses", ["FINISHED"], "poll.statuses[0]: FINISHED is terminal"),
    ("poll.statuses", ["RUNING"], 'poll.statuses[0]: unknown status "RUNING"'),
    ("poll.statuses", [], "poll.statuses: expected a non-empty list of statuses, got a list"),
    ("state.retention", "0s", 'state.retention: must be > 0, got "0s"'),
    ("state.path", 5, "state.path: expected a file path, got 5"),
    ("safety.dry_run", "maybe", 'safety.dry_run: expected true or false, got "maybe"'),
    (
        "safety.verify_timeout",
        15,
        'safety.verify_timeout: expected a duration like "90m" or "12h", got 15',
    ),
    # Written alone, a long resend_after takes verify_timeout's default along (twice it).
    ("safety.resend_after", "15m", None),
    ("safety.max_cancels_per_hour", -1, "safety.max_cancels_per_hour: must be > 0, got -1"),
    ("safety.exempt.tags", [""], 'safety.exempt.tags[0]: expected a non-empty string, got ""'),
    ("safety.exempt.groups", ["a"], "safety.exempt.groups: unknown key"),
    (
        "metrics",
        {"listen": "localhost"},
        'metrics.listen: expected host:port like "127.0.0.1:9469"',
    ),
    ("metrics", {"listen": "127.0.0.1:99999"}, "metrics.listen: port must be 0-65535"),
    (
        "notify",
        [{"url": "ntfy://topic", "events": ["job_exploded"]}],
        'notify[0].events[0]: unknown event "job_exploded"',
    ),
    ("notify", [{"url": "ntfy://topic"}], "notify[0].events: give events, a digest, or both"),
    (
        "notify",
        [{"url": "ntfy://t", "digest": "7h30"}],
        'notify[0].digest: expected a local time like "07:30", got "7h30"',
    ),
    (
        "notify",
        [{"url": "ntfy://t", "digest": "07:30", "timezone": "Mars/Base"}],
        'notify[0].timezone: expected a time zone like "America/Chicago", got "Mars/Base"',
    ),
    (
        "notify",
        [{"url": "ntfy://t", "events": ["job_cancelled"], "skip_empty": True}],
        "notify[0].digest: timezone and skip_empty apply to a digest: add digest",
    ),
    (
        "rules.0.name",
        "bad name",
        'rules[0] (bad name).name: expected letters, digits, - and _ only, got "bad name"',
    ),
    ("rules.0.action", DELETE, f"{R0}.action: is required"),
    ("rules.0.action", "kill", f'{R0}.action: expected "cancel" or "warn", got "kill"'),
    ("rules.0.when", {}, f"{R0}.when: needs at least one condition"),
    ("rules.0.when", None, f"{R0}.when: needs at least one condition"),
    ("rules.0.when", DELETE, f"{R0}.when: is required"),
    (
        "rules.0.when.runtim_over",
        "1h",
        f"{R0}.when.runtim_over: unknown key (did you mean runtime_over?)",
    ),
    ("rules.0.when.runtime_over", "99999999999d", f"{R0}.when.runtime_over: duration too long"),
    ("rules.0.when.node_hours_over", 10**400, f"{R0}.when.node_hours_over: must be a finite"),
    ("rules.0.when.node_hours_over", float("nan"), f"{R0}.when.node_hours_over: must be a finite"),
    ("rules.0.when.node_hours_over", "3.5", None),
    (
        "rules.0.when.node_hours_over",
        -5,
        f"{R0}.when.node_hours_over: must be a finite number > 0, got -5",
    ),
    (
        "rules.0.when.node_hours_over",
        "lots",
        f'{R0}.when.node_hours_over: expected a number, got "lots"',
    ),
    (
        "rules.0.when.input_matches",
        "(",
        f'{R0}.when.input_matches: invalid RE2 pattern "(": missing )',
    ),
    (
        "rules.0.when.input_matches",
        "(?<=a)b",
        f'{R0}.when.input_matches: invalid RE2 pattern "(?<=a)b"',
    ),
    (
        "rules.0.when.input_matches",
        ".*",
        f'{R0}.when.input_matches: pattern ".*" matches the empty',
    ),
    (
        "rules.0.when.input_matches",
        {"pattern": "x", "in": ["files"]},
        f'{R0}.when.input_matches.in[0]: unknown input kind "files"',
    ),
    (
        "rules.0.when.input_matches",
        {"pattern": "[", "in": ["env"]},
        f'{R0}.when.input_matches.pattern: invalid RE2 pattern "["',
    ),
    ("rules.0.when.any", [], f"{R0}.when.any: expected a non-empty list of condition maps"),
    ("rules.0.when.any", [{}], f"{R0}.when.any[0]: needs at least one condition"),
    ("rules.0.when.not", {}, f"{R0}.when.not: needs at least one condition"),
    ("rules.0.when.not", {"age_over": "soon"}, f"{R0}.when.not.age_over: expected a duration like"),
    ("rules.0.match.status", "RUNNIN", f'{R0}.match.status[0]: unknown status "RUNNIN"'),
    ("rules.0.match.status", "FINISHED", f"{R0}.match.status: FINISHED never polled"),
    ("rules.0.match.app", [], f"{R0}.match.app: must not be empty"),
    ("rules.0.match.app", 5, f"{R0}.match.app: expected a string or a list of strings, got 5"),
    (
        "rules.0.match.exec_systems",
        "x",
        f"{R0}.match.exec_systems: unknown key (did you mean exec_system?)",
    ),
    ("rules.0.grace", "soon", f'{R0}.grace: expected a duration like "90m" or "12h", got "soon"'),
    ("rules.0.dry_run", "perhaps", f'{R0}.dry_run: expected true or false, got "perhaps"'),
    ("rules.0.description", 5, f"{R0}.description: expected a string, got 5"),
    (
        "rules.1.name",
        "frontera-12h",
        'rules[1] (frontera-12h).name: duplicate rule name "frontera-12h" (also rules[0])',
    ),
    ("rules.1", "not a rule", 'rules[1]: expected a mapping, got "not a rule"'),
    ("rules", "not a list", 'rules: expected a list, got "not a list"'),
    ("tapis", "x", 'tapis: expected a mapping, got "x"'),
    ("tapis.password", DELETE, "tapis.password: is required with username (or give password_file)"),
    ("tapis.username", DELETE, "tapis.username: is required with password"),
    ("tapis.client_id", "cli", "tapis.client_key: is required with client_id"),
    ("tapis.client_key", "k", "tapis.client_id: is required with client_key"),
    ("rulez", [], "rulez: unknown key (did you mean rules?)"),
    ("source", "x", "source: unknown key"),
]


@pytest.mark.parametrize(("path", "value", "expected"), ERROR_CASES)
def test_error_messages_name_key_rule_and_value(
    tmp_path: Path, path: str, value: Any, expected: str | None
) -> None:
    data = changed(path, value)
    if expected is None:
        load_config(write(tmp_path, data), env=ENV)
        return
    found = problems_of(tmp_path, data)
    assert any(p.startswith(expected) for p in found), found


def test_no_identity_at_all(tmp_path: Path) -> None:
    data = changed("tapis.username", DELETE)
    del data["tapis"]["password"]
    (problem,) = problems_of(tmp_path, data)
    assert problem.startswith("tapis: give username with password or password_file")


def test_every_problem_is_collected(tmp_path: Path) -> None:
    data = changed("poll.interval", "0s")
    data["rules"][0]["when"]["runtime_over"] = "twelve hours"
    data["rules"][1]["action"] = "kill"
    data["rules"].append(dict(data["rules"][1]))
    data["tapis"]["tenant_ids"] = "x"
    found = problems_of(tmp_path, data)
    assert len(found) == 6, found
    assert 'rules[2] (stuck).name: duplicate rule name "stuck" (also rules[1])' in found


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE) + "poll:\nstate:\nsafety:\nnotify:\n"
    config = load_config(write(tmp_path, text), env=ENV)
    assert config.poll.interval == timedelta(seconds=60)
    assert config.notify == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("- a\n- b\n", "expected a mapping at the top level, got a list"),
        ("just text", 'expected a mapping at the top level, got "just text"'),
        ("tapis:\n  base_url: [unclosed\n", "invalid YAML at line 3"),
        ("tapis:\n  a: 1\n b: 2\n", "invalid YAML at line 3"),
        ("poll:\n  interval: 1m\n  interval: 2m\n", "invalid YAML at line 3, column 3:"),
        ("when: 2024-13-40\n", "invalid YAML: month must be in 1..12"),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, expected: str) -> None:
    (problem,) = problems_of(tmp_path, text)
    assert problem.startswith(expected), problem


def test_duplicate_keys_are_named(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path, "poll:\n  interval: 1m\n  interval: 2m\n")
    assert "found duplicate key 'interval'" in problem


def test_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    text = (
        yaml.safe_dump(BASE)
        + "safety:\n  <<: {dry_run: true, verify_timeout: 5m}\n  dry_run: false\n"
    )
    config = load_config(write(tmp_path, text), env=ENV)
    assert config.safety.dry_run is False
    assert config.safety.verify_timeout == timedelta(minutes=5)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml", env=ENV)
    assert caught.value.problems == ("file not found",)
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: file not found"
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path, env=ENV)


# --- ${VAR} ----------------------------------------------------------------------------------


def test_env_substitution(tmp_path: Path) -> None:
    data = changed("rules.0.when.runtime_over", "${LIMIT}")
    data["tapis"]["tenant_id"] = "${SITE}-$${LITERAL}"
    data["tapis"]["max_concurrency"] = "${THREADS}"
    config = load_config(
        write(tmp_path, data), env={**ENV, "LIMIT": "90m", "SITE": "ds", "THREADS": "4"}
    )
    assert config.rules[0].when.runtime_over == timedelta(minutes=90)
    assert config.tapis.tenant_id == "ds-${LITERAL}"
    assert config.tapis.max_concurrency == 4


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    assert load_config(write(tmp_path, BASE)).tapis.username == "alice"


def test_unset_variables_name_key_and_variable(tmp_path: Path) -> None:
    data = changed("rules.0.when.runtime_over", "${LIMIT}")
    found = problems_of(tmp_path, data, env={"TAPIS_PASSWORD": "p"})
    assert sorted(found) == [
        f"{R0}.when.runtime_over: environment variable LIMIT is not set",
        "tapis.username: environment variable TAPIS_USERNAME is not set",
    ]


def test_bad_variable_reference(tmp_path: Path) -> None:
    found = problems_of(tmp_path, changed("tapis.tenant_id", "${1X}"))
    assert found == ('tapis.tenant_id: invalid environment variable reference "${1X}"',)


def test_state_path_defaults_under_state_directory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE), env={**ENV, "STATE_DIRECTORY": "/var/lib/tw:/x"})
    assert config.state.path == Path("/var/lib/tw/state.db")
    explicit = load_config(
        write(tmp_path, changed("state.path", "/srv/w.db")), env={**ENV, "STATE_DIRECTORY": "/v"}
    )
    assert explicit.state.path == Path("/srv/w.db")


# --- *_file secrets --------------------------------------------------------------------------


def test_secret_files_are_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "key").write_text("client-key\r\n", encoding="utf-8")
    (tmp_path / "hook").write_text("slack://T/B/C\n", encoding="utf-8")
    data = changed("tapis.password", DELETE)
    data["tapis"]["password_file"] = "pw"  # relative to the configuration's directory
    data["tapis"]["client_id"] = "cli"
    data["tapis"]["client_key_file"] = str(tmp_path / "key")
    data["notify"] = [{"url_file": "hook", "events": ["job_cancelled"]}]
    config = load_config(write(tmp_path, data), env=ENV)
    assert config.tapis.password is not None
    assert config.tapis.password.get_secret_value() == "s3cret"
    assert config.tapis.client_key is not None
    assert config.tapis.client_key.get_secret_value() == "client-key"
    assert config.notify[0].url.get_secret_value() == "slack://T/B/C"
    assert config.notify[0].display_url == "slack://..."


def test_access_token_file(tmp_path: Path) -> None:
    (tmp_path / "jwt").write_text("eyJ.token.sig\n", encoding="utf-8")
    data = {
        "tapis": {"base_url": "http://127.0.0.1:8080", "tenant_id": "t", "access_token_file": "jwt"}
    }
    config = load_config(write(tmp_path, data), env={})
    assert config.tapis.access_token is not None
    assert config.tapis.access_token.get_secret_value() == "eyJ.token.sig"
    assert config.tapis.username is None


def test_secret_file_errors_name_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    data = changed("tapis.password", DELETE)
    data["tapis"]["password_file"] = str(missing)
    (problem,) = problems_of(tmp_path, data)
    assert problem == f'tapis.password_file: cannot read "{missing}": No such file or directory'

    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    data["tapis"]["password_file"] = str(tmp_path / "empty")
    (problem,) = problems_of(tmp_path, data)
    assert problem == f'tapis.password_file: the file "{tmp_path / "empty"}" is empty'

    data["tapis"]["password_file"] = "bad\0path"
    (problem,) = problems_of(tmp_path, data)
    assert problem.startswith("tapis.password_file: cannot read")
    assert "null byte" in problem

    both = changed("tapis.password_file", str(tmp_path / "empty"))
    (problem,) = problems_of(tmp_path, both)
    assert problem == "tapis.password_file: give password or password_file, not both"


# --- secrets never shown ---------------------------------------------------------------------


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["tapis"].update(client_id="cli", client_key="client-key-secret")
    data["notify"] = [{"url": "mailto://bob:mail-secret@example.org", "events": ["job_warned"]}]
    config = load_config(write(tmp_path, data), env=ENV)
    for text in (repr(config), str(config), repr(config.tapis), str(config.notify)):
        for secret in ("hunter2-secret", "client-key-secret", "mail-secret"):
            assert secret not in text
    assert config.notify[0].display_url == "mailto://..."


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("tapis.password", ["hunter2-secret"]),
        ("tapis.password", 12345),
        ("tapis.password", ""),
        ("tapis.client_key", 987654),
        ("notify", [{"url": "hunter2-secret", "events": ["job_warned"]}]),
        ("notify", [{"url": 12345, "events": ["job_warned"]}]),
    ],
)
def test_secrets_never_appear_in_errors(tmp_path: Path, path: str, value: Any) -> None:
    data = changed(path, value)
    data["tapis"]["client_id"] = "cli"
    data["tapis"].setdefault("client_key", "client-key-secret")
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data), env=ENV)
    text = str(caught.value)
    for secret in ("hunter2-secret", "12345", "987654", "client-key-secret"):
        assert secret not in text
    assert path.split(".", maxsplit=1)[0] in text


def test_an_unrelated_error_does_not_print_the_password(tmp_path: Path) -> None:
    data = changed("poll.interval", "${TAPIS_PASSWORD}")
    (problem,) = problems_of(tmp_path, data, env={**ENV, "TAPIS_PASSWORD": "1"})
    assert problem.startswith("poll.interval:")
    assert load_config(write(tmp_path, BASE), env=ENV).tapis.password is not None


# --- properties ------------------------------------------------------------------------------

VOCABULARY = [
    "tapis", "base_url", "tenant_id", "username", "password", "password_file", "access_token",
    "client_id", "client_key", "timeout", "max_concurrency", "poll", "interval", "page_size",
    "list_type", "statuses", "state", "path", "retention", "safety", "dry_run", "exempt", "tags",
    "max_cancels_per_poll", "verify_timeout", "rules", "name", "match", "app", "status",
    "tags_any", "when", "runtime_over", "in_status_over", "node_hours_over", "input_matches",
    "pattern", "in", "any", "not", "grace", "action", "metrics", "listen", "notify", "url",
    "events", "url_file",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=True)
    | st.sampled_from(
        [
            "12h",
            "0s",
            "1h30m",
            "RUNNING",
            "FINISHED",
            "cancel",
            "warn",
            "(",
            ".*",
            "\\.tmp$",
            "${TAPIS_USERNAME}",
            "${NOPE}",
            "$${X}",
            "https://x.org/",
            "127.0.0.1:1",
            "job_warned",
            "file_inputs",
            "mailto://a@b",
            "/nonexistent/file",
        ]
    )
    | st.text(max_size=12)
)
trees = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(VOCABULARY) | st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=st.dictionaries(st.sampled_from(VOCABULARY), trees, max_size=6))
def test_loader_raises_only_config_error_on_yaml_ish_data(
    tmp_path: Path, tree: dict[str, Any]
) -> None:
    path = write(tmp_path, yaml.safe_dump(tree, allow_unicode=True))
    assert isinstance(outcome_of(path), Config | ConfigError)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`,? \n\t0129.")), max_size=60)
)
def test_loader_raises_only_config_error_on_arbitrary_text(tmp_path: Path, text: str) -> None:
    assert isinstance(outcome_of(write(tmp_path, text)), ConfigError)


def outcome_of(path: Path) -> Config | ConfigError:
    """The loaded configuration, or the ConfigError (with at least one problem) it raised."""
    try:
        return load_config(path, env=ENV)
    except ConfigError as exc:
        if not exc.problems or not all(isinstance(p, str) and p for p in exc.problems):
            raise AssertionError(exc.problems) from exc
        return exc
