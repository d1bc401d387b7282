"""tapis-watchdog: watch Tapis v3 jobs, cancel the ones that break your rules, prove it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tapis-watchdog")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
