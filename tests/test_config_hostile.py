"""Hostile and malformed configurations: each is refused by `check` with exit 2, naming the key.

The files are what an operator (or an attacker with write access to a config repository) could
put in front of `check` and `run`: alias bombs, a huge file, a state path that cannot hold a
database, and one wrong value at every level of the schema.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from watchdog.cli import main
from watchdog.config import source
from watchdog.config.model import load_config
from watchdog.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

BASE: dict[str, Any] = {
    "tapis": {"base_url": "https://tapis.example", "tenant_id": "t", "access_token": "tok"},
    "rules": [{"name": "r", "when": {"runtime_over": "12h"}, "action": "cancel"}],
}
DELETE = object()
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
    for name, prev in zip("abcdefghi", ["", *"abcdefgh"], strict=True)
)


def with_value(tmp_path: Path, key: str, value: Any) -> dict[str, Any]:
    """BASE with `state.path` in `tmp_path` and one dotted key set (or deleted with DELETE)."""
    data = copy.deepcopy(BASE)
    data["state"] = {"path": str(tmp_path / "state.db")}
    *parents, last = key.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last) : int(last) + 1] = [value]
    else:
        node[last] = value
    return data


def not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "notes.txt"
    path.write_text("my notes\n", encoding="utf-8")
    return str(path)


def under_a_file(tmp_path: Path) -> str:
    path = tmp_path / "plain"
    path.write_text("x", encoding="utf-8")
    return str(path / "state.db")


def a_directory(tmp_path: Path) -> str:
    (tmp_path / "dir").mkdir()
    return str(tmp_path / "dir")


# (id, key, value, what the message must contain). A callable value is built from tmp_path.
KEYED: list[tuple[str, str, Any, str]] = [
    ("base-url-scheme", "tapis.base_url", "ftp://tapis.example", "tapis.base_url: expected"),
    ("tenant-missing", "tapis.tenant_id", DELETE, "tapis.tenant_id: is required"),
    ("unknown-tapis-key", "tapis.base_ulr", "x", "tapis.base_ulr: unknown key"),
    ("timeout-words", "tapis.timeout", "soon", "tapis.timeout:"),
    ("concurrency-zero", "tapis.max_concurrency", 0, "tapis.max_concurrency:"),
    (
        "token-file-missing",
        "tapis.access_token_file",
        "/nonexistent/tok",
        "tapis.access_token_file",
    ),
    ("interval-negative", "poll.interval", "-5s", "poll.interval:"),
    ("page-size-text", "poll.page_size", "many", "poll.page_size:"),
    ("list-type", "poll.list_type", "EVERYONE", "poll.list_type: expected one of"),
    ("terminal-status", "poll.statuses", ["FINISHED"], "poll.statuses[0]: FINISHED is terminal"),
    ("state-dir", "state.path", a_directory, "state.path: "),
    ("state-under-file", "state.path", under_a_file, "state.path: cannot create"),
    ("state-not-db", "state.path", not_a_database, "state.path: "),
    ("retention-zero", "state.retention", "0s", "state.retention:"),
    ("dry-run-maybe", "safety.dry_run", "maybe", "safety.dry_run:"),
    ("cancels-negative", "safety.max_cancels_per_poll", -1, "safety.max_cancels_per_poll:"),
    (
        "resend-late",
        "safety",
        {"verify_timeout": "15m", "resend_after": "20m"},
        "safety.resend_after: must be shorter",
    ),
    ("unknown-exempt-key", "safety.exempt.nope", 1, "safety.exempt.nope: unknown key"),
    ("rule-name", "rules.0.name", "bad name!", "rules[0]"),
    (
        "rule-duration",
        "rules.0.when.runtime_over",
        "twelve hours",
        "rules[0] (r).when.runtime_over",
    ),
    ("rule-action", "rules.0.action", "explode", "rules[0] (r).action"),
    ("rule-regex", "rules.0.when.input_matches", "(", "rules[0] (r).when.input_matches"),
    ("rule-grace", "rules.0.grace", "-1m", "rules[0] (r).grace"),
    (
        "rule-duplicate",
        "rules.1",
        {"name": "r", "when": {"age_over": "1d"}, "action": "warn"},
        "rules[1] (r).name: duplicate rule name",
    ),
    ("metrics-listen", "metrics.listen", "nowhere", "metrics.listen: expected host:port"),
    ("notify-url", "notify", [{"url": "not a url", "events": ["job_cancelled"]}], "notify[0].url"),
    (
        "notify-event",
        "notify",
        [{"url": "ntfy://topic", "events": ["job_exploded"]}],
        "notify[0].events",
    ),
    # (In the tapis section an unset variable is an error only for the commands that log in.)
    ("unset-variable", "poll.list_type", "${WATCHDOG_TEST_UNSET}", "poll.list_type: environment"),
    ("unknown-top-key", "rulez", [], "rulez: unknown key"),
]
# (id, file text, what the message must contain): problems of the file as a whole.
WHOLE: list[tuple[str, str, str]] = [
    ("alias-bomb", BOMB, "aliases expand the document by more than"),
    ("recursive-alias", "a: &a [*a]\n", "refers to a node that contains it"),
    ("duplicate-key", "poll:\n  interval: 1m\n  interval: 2m\n", "duplicate key 'interval'"),
    ("oversize", "# " + "x" * (source.MAX_CONFIG_BYTES + 10) + "\n", "larger than 1 MiB"),
]


def run_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check", "-c", str(path)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value", "expected"), [c[1:] for c in KEYED], ids=[c[0] for c in KEYED]
)
def test_a_malformed_configuration_exits_2_naming_the_key(  # noqa: PLR0917 - fixtures + case
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    value: Any,
    expected: str,
) -> None:
    monkeypatch.delenv("WATCHDOG_TEST_UNSET", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    data = with_value(tmp_path, key, value(tmp_path) if callable(value) else value)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, err = run_check(path, capsys)
    assert code == 2, err
    assert expected in err, err


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in WHOLE], ids=[c[0] for c in WHOLE])
def test_a_hostile_file_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    code, err = run_check(path, capsys)
    assert code == 2, err
    assert expected in err, err


def test_the_base_of_the_malformed_cases_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    data = with_value(tmp_path, "poll.interval", "1m")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, err = run_check(path, capsys)
    assert (code, err) == (0, "")


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    rules = "".join(f"  - {{name: r{i}, when: *limit, action: cancel}}\n" for i in range(200))
    text = (
        "tapis: {base_url: 'https://tapis.example', tenant_id: t, access_token: tok}\n"
        "safety: {exempt: {tags: &tags [keep, hold]}}\n"
        "rules:\n"
        "  - {name: base, when: &limit {runtime_over: 12h}, action: cancel}\n" + rules
    )
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path, env={})
    assert len(config.rules) == 201
    assert config.safety.exempt.tags == ("keep", "hold")


def test_the_expansion_bound_counts_repeats_not_distinct_values() -> None:
    shared = yaml.compose("[" + ", ".join(["x"] * 50) + "]")
    assert shared is not None
    twice = yaml.SequenceNode("tag:yaml.org,2002:seq", [shared, shared])
    source.check_expansion(twice, 51)
    with pytest.raises(ValueError, match="more than 50"):
        source.check_expansion(twice, 50)


def test_the_c_parser_is_used_where_pyyaml_has_it() -> None:
    assert issubclass(source._Loader, yaml.CSafeLoader) is bool(yaml.__with_libyaml__)


def test_an_endless_file_is_read_only_up_to_the_limit() -> None:
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config("/dev/zero", env={})
