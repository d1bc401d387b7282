"""Packaging as a new user meets it: the sdist, the wheel, pipx in an empty directory, `init`.

The slow test builds the sdist and, from it, the wheel (`python -m build`), installs the wheel
with pipx into a private PIPX_HOME, and in an empty directory runs `init`, `check` without any
Tapis credentials, and the demo (about 30 s): the path README's "Install" section promises.
"""

from __future__ import annotations

import ast
import email
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from test_demo import assert_demo_output

from watchdog.cli import main

REPO = Path(__file__).resolve().parent.parent
SHIPPED = {
    "config.yaml": REPO / "config.example.yaml",
    "tapis-watchdog.service": REPO / "systemd" / "tapis-watchdog.service",
}
# What the tests, the docs and the build need from outside the package, all in the sdist.
SDIST_DIRS = ("tests", "docs", "systemd", "deploy", "bench")
SDIST_FILES = ("LICENSE", "README.md", "CHANGELOG.md", "config.example.yaml", "setup.py",
               "pyproject.toml")  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no Tapis credentials, no virtual environment."""
    drop = ("TAPIS_", "VIRTUAL_ENV", "PYTHONPATH", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY",
            "PIPX_", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **extra}


def test_init_writes_the_repository_files_and_never_overwrites_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "new"
    assert main(["init", str(target)]) == 0
    for name, source in SHIPPED.items():
        assert (target / name).read_bytes() == source.read_bytes()
    assert f"tapis-watchdog check -c {target / 'config.yaml'}" in capsys.readouterr().out
    (target / "config.yaml").write_text("mine\n", encoding="utf-8")
    assert main(["init", str(target)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (target / "config.yaml").read_text(encoding="utf-8") == "mine\n"
    assert main(["init", str(target), "--force"]) == 0
    assert (target / "config.yaml").read_bytes() == SHIPPED["config.yaml"].read_bytes()


def test_the_license_file_is_bsd_3_clause_as_pyproject_says() -> None:
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert 'license = "BSD-3-Clause"' in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def _expected_sdist_files() -> set[str]:
    """Every file git tracks (but .gitignore), or without git the folders the tests read."""
    if (REPO / ".git").exists():
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files"], check=True, capture_output=True, text=True
        ).stdout.split()
        return {name for name in listed if name != ".gitignore" and (REPO / name).is_file()}
    found = {name for name in SDIST_FILES if (REPO / name).is_file()}
    for top in SDIST_DIRS:
        for path in (REPO / top).rglob("*"):
            rel = path.relative_to(REPO)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                found.add(rel.as_posix())
    return found


@pytest.mark.timeout(420)
def test_the_wheel_installed_with_pipx_in_an_empty_directory_works(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # The sdist first, then the wheel built from the unpacked sdist: the sdist must be whole.
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)],
        check=True, capture_output=True, timeout=300, env=clean_env(),
    )  # fmt: skip
    (sdist,) = dist.glob("tapis_watchdog-*.tar.gz")
    (wheel,) = dist.glob("tapis_watchdog-*.whl")

    with tarfile.open(sdist) as tar:
        prefix = tar.getnames()[0].split("/")[0]
        members = {name.removeprefix(f"{prefix}/") for name in tar.getnames()}
    missing = _expected_sdist_files() - members
    assert not missing, f"the sdist lacks {sorted(missing)}"

    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        assert whl.read("watchdog/data/config.example.yaml") == SHIPPED["config.yaml"].read_bytes()
        assert (
            whl.read("watchdog/data/tapis-watchdog.service")
            == SHIPPED["tapis-watchdog.service"].read_bytes()
        )
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(whl.read(metadata_name))
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert "Typing :: Typed" in metadata.get_all("Classifier", [])
    assert metadata.get_all("Project-URL")
    requires = " ".join(metadata.get_all("Requires-Dist", []))
    assert "stamina" not in requires

    home, bin_dir, empty = tmp_path / "pipx", tmp_path / "bin", tmp_path / "empty"
    empty.mkdir()
    pipx_env = clean_env(PIPX_HOME=str(home), PIPX_BIN_DIR=str(bin_dir),
                         PIPX_MAN_DIR=str(tmp_path / "man"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pipx", "install", str(wheel)],
        check=True, capture_output=True, timeout=300, cwd=empty, env=pipx_env,
    )  # fmt: skip
    command = str(bin_dir / "tapis-watchdog")

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: PLW1510 - the exit codes are asserted
            [command, *args], capture_output=True, text=True, timeout=timeout, cwd=empty,
            env=clean_env(),
        )  # fmt: skip

    done = run("init")
    assert done.returncode == 0, done.stderr
    for name, source in SHIPPED.items():
        assert (empty / name).read_bytes() == source.read_bytes()
    done = run("check", "-c", "config.yaml")
    assert done.returncode == 0, done.stderr
    assert "config.yaml: valid" in done.stdout
    assert "TAPIS_USERNAME is not set" in done.stdout
    done = run("demo", timeout=120)
    assert done.returncode == 0, done.stderr
    assert_demo_output(done.stdout)
    assert "tapis-watchdog init" in done.stdout  # the closing hint, just followed above
    assert "Traceback" not in done.stderr


# The import name of each runtime dependency whose distribution name differs from it.
IMPORT_NAMES = {"pyyaml": "yaml", "google-re2": "re2", "prometheus-client": "prometheus_client"}


def test_every_declared_dependency_is_imported_by_the_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {
        re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]
    }
    imported: set[str] = set()
    for path in (REPO / "watchdog").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    unused = sorted(d for d in declared if IMPORT_NAMES.get(d, d.replace("-", "_")) not in imported)
    assert not unused, f"declared but never imported: {unused}"
