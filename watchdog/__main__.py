"""`python -m watchdog` runs the `tapis-watchdog` command."""

from __future__ import annotations

from watchdog.cli import main

raise SystemExit(main())
