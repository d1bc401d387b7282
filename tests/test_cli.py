"""The command line itself: help for every subcommand, usage errors, `python -m watchdog`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from watchdog import __version__
from watchdog.cli import build_parser, main

SUBCOMMANDS = (
    "run",
    "check",
    "explain",
    "test-rules",
    "cancel",
    "history",
    "report",
    "silence",
    "sim",
    "demo",
    "init",
    "budgets",
)


def test_every_product_command_exists():
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert set(actions[0].choices) == set(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_subcommand_explains_itself_and_its_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: tapis-watchdog {command}" in out
    assert "Exit: 0" in out
    for line in out.splitlines():
        if line.strip().startswith("-") and "  " in line.strip():
            assert line.split("  ", 1)[1].strip(), f"option without help: {line!r}"


def test_a_missing_configuration_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("TAPIS_WATCHDOG_CONFIG", raising=False)
    assert main(["check"]) == 2
    assert "pass -c FILE or set TAPIS_WATCHDOG_CONFIG" in capsys.readouterr().err


def test_the_configuration_path_may_come_from_the_environment(monkeypatch, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "tapis: {base_url: 'https://tacc.tapis.io', tenant_id: tacc, username: u, password: p}\n"
        "rules: [{name: r, when: {runtime_over: 1h}, action: warn}]\n"
    )
    monkeypatch.setenv("TAPIS_WATCHDOG_CONFIG", str(config))
    assert main(["check"]) == 0
    assert "r: warn" in capsys.readouterr().out


def test_python_dash_m_watchdog_is_the_same_command():
    done = subprocess.run(
        [sys.executable, "-m", "watchdog", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"tapis-watchdog {__version__}"


def _commands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _commands(sub, (*prefix, name))


def test_readme_documents_every_command_and_option():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    missing = []
    for path, sub in [((), parser), *_commands(parser)]:
        if path and f"`{' '.join(path)}" not in readme:
            missing.append(" ".join(path))
        missing.extend(
            f"{' '.join(path)} {option}"
            for action in sub._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help" and option not in readme
        )
    assert not missing, f"README lacks {missing}"
