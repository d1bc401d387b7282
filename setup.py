"""Build hook: the wheel carries the repository's example configuration and systemd unit.

`config.example.yaml` and `systemd/tapis-watchdog.service` stay the source of truth at the top of
the repository (README and docs/systemd.md point there); building the package copies them into
`watchdog/data/`, where `tapis-watchdog init` finds them in an installed copy (pipx, a wheel). An
editable install reads the repository's files directly. Everything else is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# repository path -> name under watchdog/data/
SHIPPED = {
    "config.example.yaml": "config.example.yaml",
    "systemd/tapis-watchdog.service": "tapis-watchdog.service",
}


class BuildPyWithData(build_py):
    """`build_py`, then the shipped files into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the package is the source tree: `init` reads the repository's files
        target = Path(self.build_lib) / "watchdog" / "data"
        target.mkdir(parents=True, exist_ok=True)
        for source, name in SHIPPED.items():
            self.copy_file(source, str(target / name))


setup(cmdclass={"build_py": BuildPyWithData})
