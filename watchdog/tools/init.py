"""`tapis-watchdog init [DIR]`: write the commented example configuration and the systemd unit.

An installed copy (pipx, a wheel) carries both under `watchdog/data/`, copied at build time from
the repository's `config.example.yaml` and `systemd/tapis-watchdog.service`, which stay the source
of truth; a source checkout (an editable install) reads those files directly. `init` writes
`DIR/config.yaml` (to edit: base_url, tenant_id, the rules) and `DIR/tapis-watchdog.service`, and
never overwrites a file unless `--force`.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.errors import UsageError, WatchdogError

if TYPE_CHECKING:
    import argparse

# the name written into DIR -> (the name under watchdog/data/, the repository path)
FILES = {
    "config.yaml": ("config.example.yaml", "config.example.yaml"),
    "tapis-watchdog.service": ("tapis-watchdog.service", "systemd/tapis-watchdog.service"),
}
_REPO = Path(__file__).resolve().parents[2]


def shipped(name: str) -> bytes:
    """The shipped file written as `name` (a key of `FILES`).

    Raises:
        WatchdogError: this installation has neither the packaged copy nor the repository's file.
    """
    packaged, repo_path = FILES[name]
    resource = resources.files("watchdog").joinpath("data", packaged)
    if resource.is_file():
        return resource.read_bytes()
    source = _REPO / repo_path
    if source.is_file():  # a source checkout: the repository's own file
        return source.read_bytes()
    raise WatchdogError(
        f"this installation lacks {packaged} (neither watchdog/data/{packaged} nor {source}): "
        "reinstall tapis-watchdog from a wheel or sdist"
    )


def _out(text: str) -> None:
    print(text, file=sys.stdout, flush=True)  # noqa: T201 - the command's own output


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a directory")
    contents = {name: shipped(name) for name in FILES}
    existing = [target / name for name in FILES if (target / name).exists()]
    if existing and not args.force:
        names = ", ".join(str(path) for path in existing)
        raise UsageError(f"{names} already exists: pass --force to overwrite")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            (target / name).write_bytes(data)
    except OSError as exc:
        raise WatchdogError(f"cannot write into {target}: {exc.strerror or exc}") from None
    config = target / "config.yaml"
    _out(f"wrote {config}: the commented example configuration (edit tapis, rules)")
    _out(f"wrote {target / 'tapis-watchdog.service'}: the systemd unit (see docs/systemd.md)")
    _out(f"next: tapis-watchdog check -c {config}")
    return 0
