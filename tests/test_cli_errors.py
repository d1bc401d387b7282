"""No traceback reaches a user: each failure is one line on stderr with its documented exit code.

The reproductions that need a real process (stdin closed, a reader that goes away, a port held by
someone else) run `python -m watchdog` as a subprocess; the others go through `cli.main`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
import yaml

from watchdog.cli import main
from watchdog.errors import EXIT_PIPE, EXIT_USAGE
from watchdog.state.store import StateStore

if TYPE_CHECKING:
    from pathlib import Path

TAPIS = {
    "base_url": "http://127.0.0.1:9",
    "tenant_id": "designsafe",
    "username": "alice",
    "password": "literal-password",
}
RULES = [{"name": "long-run", "when": {"runtime_over": "12h"}, "action": "cancel"}]


def write_config(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "config.yaml"
    data = {"tapis": TAPIS, "state": {"path": str(tmp_path / "state.db")}, "rules": RULES}
    path.write_text(yaml.safe_dump({**data, **extra}), encoding="utf-8")
    return path


def watchdog(*args: str, cwd: Path, shell_prefix: str = "", **kwargs: object):
    command = [sys.executable, "-m", "watchdog", *args]
    if shell_prefix:
        # Let a shell set up the file descriptors (e.g. `<&-` closes stdin for the program).
        command = ["sh", "-c", f'"$@" {shell_prefix}', "sh", *command]
    return subprocess.run(  # noqa: PLW1510 - the tests check the exit code
        command, capture_output=True, text=True, timeout=60, cwd=cwd, **kwargs
    )


def assert_one_line(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- the three tracebacks of the report ----------------------------------------------------------


def test_cancel_without_yes_and_stdin_closed_is_a_usage_error(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = watchdog(
        "cancel", "-c", str(config), "00000000-0000-4000-8000-000000000000-007",
        cwd=tmp_path, shell_prefix="<&-",
    )  # fmt: skip
    assert done.returncode == EXIT_USAGE
    assert_one_line(done.stderr, "usage error", "--yes")


@pytest.mark.parametrize("stdin", ["none", "closed", "pipe"])
def test_cancel_without_yes_never_asks_tapis_when_no_one_can_confirm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str
) -> None:
    config = write_config(tmp_path)
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    with os.fdopen(read_fd, encoding="utf-8") as pipe:
        if stdin == "closed":
            pipe.close()
        monkeypatch.setattr(sys, "stdin", None if stdin == "none" else pipe)
        # Tapis at 127.0.0.1:9 would refuse the connection: the answer comes before any call.
        assert main(["cancel", "-c", str(config), "some-uuid"]) == EXIT_USAGE
    assert_one_line(capsys.readouterr().err, "pass --yes")


def test_history_into_a_reader_that_goes_away_ends_quietly(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with StateStore.open(tmp_path / "state.db") as store:
        now = datetime.now(UTC).isoformat()
        for n in range(3000):  # well past a pipe's buffer
            store.append_event({"timestamp": now, "level": "info", "event": "poll_completed",
                                "jobs_seen": n})  # fmt: skip
    done = watchdog("history", "-c", str(config), "--json", cwd=tmp_path, shell_prefix="| head -3")
    # The shell reports head's status; run the command itself with its stdout closed early too.
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 3
    assert done.stderr == ""
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdog", "history", "-c", str(config), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PIPE
    assert err == b""


def test_a_second_run_on_a_held_metrics_address_says_which_address_and_key(
    tmp_path: Path,
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        address = f"127.0.0.1:{held.getsockname()[1]}"
        config = write_config(tmp_path, metrics={"listen": address})
        done = watchdog("run", "-c", str(config), "--once", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert "Traceback" not in done.stderr
    assert_one_line(done.stderr, f"cannot listen on {address}", "metrics.listen", str(config))


def test_sim_on_a_held_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        done = watchdog("sim", "--port", port, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert_one_line(done.stderr, f"cannot listen on 127.0.0.1:{port}")


# -- usage, configuration and input files are told apart ------------------------------------------


def test_usage_errors_are_not_reported_as_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    for argv in (
        ["explain", "-c", str(config)],
        ["explain", "-c", str(config), "--job-file", "x.json", "--now", "yesterday"],
        ["history", "-c", str(config), "--since", "a while"],
    ):
        assert main(argv) == EXIT_USAGE, argv
        err = capsys.readouterr().err
        assert_one_line(err, "usage error")
        assert "invalid configuration" not in err


def test_a_missing_or_broken_cases_file_names_the_file_not_errno(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    missing = tmp_path / "missing.yaml"
    assert main(["test-rules", "-c", str(config), str(missing)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert_one_line(err, f"invalid input: cases file {missing}: file not found")
    assert "Errno" not in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("cases: [\n", encoding="utf-8")
    assert main(["test-rules", "-c", str(config), str(broken)]) == EXIT_USAGE
    assert_one_line(capsys.readouterr().err, f"cases file {broken}: invalid YAML at line")


def test_a_missing_or_broken_job_file_is_invalid_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["explain", "-c", str(config), "--job-file", str(tmp_path)]) == EXIT_USAGE
    assert_one_line(capsys.readouterr().err, "invalid input: job file", "directory")
    not_json = tmp_path / "job.json"
    not_json.write_text("{", encoding="utf-8")
    assert main(["explain", "-c", str(config), "--job-file", str(not_json)]) == EXIT_USAGE
    assert_one_line(capsys.readouterr().err, f"job file {not_json}: not JSON")


def test_a_broken_configuration_is_invalid_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, poll={"interval": "soon"})
    assert main(["check", "-c", str(config)]) == EXIT_USAGE
    assert_one_line(capsys.readouterr().err, "invalid configuration", "poll.interval")


# -- odd inputs: each a one-line answer with the documented code, never "unexpected" --------------


def test_odd_inputs_get_a_one_line_answer_not_an_unexpected_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    StateStore.open(tmp_path / "state.db").close()
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n- job: {status: RUNNING, remoteStarted: '-99999999999d'}\n  expect: none\n",
        encoding="utf-8",
    )
    for argv, code, needle in (
        (["history", "-c", str(config), "--since", "99999999999d"], 2, "--since: too long"),
        (["report", "-c", str(config), "--since", "99999999999d"], 2, "--since: too long"),
        (
            [
                "silence",
                "add",
                "-c",
                str(config),
                "some-job-uuid",
                "--for",
                "99999999999d",
                "--reason",
                "r",
            ],
            2,
            "--for: too long",
        ),
        (["test-rules", "-c", str(config), str(cases)], 2, "too far from now"),
        (["sim", "--fleet", str(tmp_path / "nope.yaml")], 2, "No such file or directory"),
        (["init", str(config)], 2, "is not a directory"),
    ):
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert_one_line(err, needle)
        assert "unexpected error" not in err
        assert "Errno" not in err


def test_a_closed_stdout_is_no_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = watchdog("check", "-c", str(config), cwd=tmp_path, shell_prefix=">&-")
    assert "Traceback" not in done.stderr
    assert "unexpected error" not in done.stderr


def test_a_closed_stderr_is_no_traceback_and_nothing_on_stdout(tmp_path: Path) -> None:
    done = watchdog("check", "-c", str(tmp_path / "nope.yaml"), cwd=tmp_path, shell_prefix="2>&-")
    assert done.returncode == EXIT_USAGE
    assert done.stdout == ""
