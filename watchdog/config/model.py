"""The configuration: YAML → validated, frozen `Config`, or a `ConfigError` listing every problem.

    load_config(path, env=None) -> Config                 for the commands that log in to Tapis
    load_offline_config(path, env=None) -> OfflineConfig  for those that never do
        tapis    TapisSettings     where and who (secrets are SecretStr); in an OfflineConfig
                                   None when it needs what this environment lacks
                                   (`tapis_deferred` says what, see config/tapis_settings.py)
        poll     PollSettings      cadence, page size, list type, statuses
        state    StateSettings     SQLite path, retention of terminal jobs
        safety   SafetySettings    dry run, circuit breaker, verify timeout, exemptions
        rules    tuple[RuleConfig] see watchdog.config.rule_schema
        budgets  tuple[BudgetConfig] limits across jobs, see watchdog.config.budget_schema
        charge_rates ChargeRates   SU per node hour by exec system and queue (for su limits)
        metrics  MetricsSettings | None
        notify   tuple[NotifyTarget]
        source   the file it came from

Defaults follow what the user wrote (`SafetySettings`): `resend_after` is 1m, or half of a
`verify_timeout` of 2m or less; `verify_timeout` is 15m, or twice a `resend_after` of 15m or more;
`max_cancels_per_hour` is 50, or `max_cancels_per_poll` when that is larger.

Each problem names its key path (with rule index and name), and the bad value unless it is a
secret: `rules[2] (frontera-12h).when.runtime_over: expected a duration like "90m" or "12h", got
"twelve hours"`.
"""

from __future__ import annotations

import os
import re
from datetime import time, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr, ValidationError, ValidationInfo, field_validator, model_validator

from watchdog.config.budget_schema import (
    BudgetConfig,
    ChargeRates,
    budget_problems,
)
from watchdog.config.fields import (
    Flag,
    Loc,
    PositiveDuration,
    PositiveInt,
    StrictModel,
    problem,
    problems,
    show,
)
from watchdog.config.rule_schema import RuleConfig  # noqa: TC001 - pydantic resolves it at runtime
from watchdog.config.safety import ExemptSettings, SafetySettings
from watchdog.config.source import (
    format_errors,
    key_path,
    read_secret_files,
    read_yaml,
    substitute_env,
)
from watchdog.config.tapis_settings import TapisSettings, base_dir, check_shape
from watchdog.errors import ConfigError
from watchdog.jobs import ACTIVE_STATUSES, ALL_STATUSES, TERMINAL_STATUSES

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "EVENTS",
    "LIST_TYPES",
    "BudgetConfig",
    "ChargeRates",
    "Config",
    "ExemptSettings",
    "MetricsSettings",
    "NotifyTarget",
    "OfflineConfig",
    "PollSettings",
    "SafetySettings",
    "StateSettings",
    "TapisSettings",
    "load_config",
    "load_offline_config",
]

EVENTS: tuple[str, ...] = (
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
)
LIST_TYPES: tuple[str, ...] = ("MY_JOBS", "SHARED_JOBS", "ALL_JOBS")
_DIGEST = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://\S")


class PollSettings(StrictModel):
    """How often and how widely the jobs are listed."""

    interval: PositiveDuration = timedelta(seconds=60)
    page_size: PositiveInt = 500
    list_type: str = "MY_JOBS"
    statuses: tuple[str, ...] = ACTIVE_STATUSES

    @field_validator("list_type", mode="before")
    @classmethod
    def _check_list_type(cls, value: Any) -> str:
        if value not in LIST_TYPES:
            raise problem(f"expected one of {', '.join(LIST_TYPES)}, got {show(value)}")
        return str(value)

    @field_validator("statuses", mode="before")
    @classmethod
    def _check_statuses(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise problem(f"expected a non-empty list of statuses, got {show(value)}")
        found: list[tuple[Loc, str]] = []
        for index, status in enumerate(value):
            if status in TERMINAL_STATUSES:
                found.append(((index,), f"{status} is terminal: only active jobs are polled"))
            elif status not in ALL_STATUSES:
                found.append(
                    (
                        (index,),
                        (
                            f"unknown status {show(status)} "
                            f"(expected one of {', '.join(ACTIVE_STATUSES)})"
                        ),
                    )
                )
        if found:
            raise problems(found)
        return tuple(dict.fromkeys(value))


class StateSettings(StrictModel):
    """The SQLite state store and how long records of terminal jobs are kept."""

    path: Path = Path("watchdog-state.db")
    retention: PositiveDuration = timedelta(days=30)

    @field_validator("path", mode="before")
    @classmethod
    def _check_path(cls, value: Any) -> Any:
        if not isinstance(value, str | Path) or not str(value):
            raise problem(f"expected a file path, got {show(value)}")
        return value


class MetricsSettings(StrictModel):
    """The Prometheus listener: `listen` is `host:port` (`[::1]:9469` for IPv6)."""

    listen: str = "127.0.0.1:9469"

    @field_validator("listen", mode="before")
    @classmethod
    def _check_listen(cls, value: Any) -> str:
        expected = f'expected host:port like "127.0.0.1:9469", got {show(value)}'
        if not isinstance(value, str):
            raise problem(expected)
        host, _, port = value.strip().rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
        if not host or (":" in host and not bracketed) or any(c.isspace() for c in host):
            raise problem(expected)
        if not port.isdigit() or int(port) > 65535:
            raise problem(f"port must be 0-65535, got {show(value)}")
        return value.strip()

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class NotifyTarget(StrictModel):
    """One Apprise URL, the events sent to it, and its daily digest. The URL is a secret: print
    `display_url`.

    `digest: "07:30"` sends the report of the last 24 hours once a day at that local time
    (`timezone`, an IANA name, else the machine's); `skip_empty` skips a day with nothing to say.
    A target needs `events`, a `digest`, or both.
    """

    url: SecretStr
    url_file: str | None = None
    events: tuple[str, ...] = ()
    digest: time | None = None
    timezone: str | None = None
    skip_empty: Flag = False

    @field_validator("digest", mode="before")
    @classmethod
    def _check_digest(cls, value: Any) -> time | None:
        if value is None:
            return None
        # YAML 1.1 reads an unquoted 07:30 as the sexagesimal number 450: take it back.
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            return time(value // 60, value % 60)
        match = _DIGEST.match(value) if isinstance(value, str) else None
        if match is None:
            raise problem(f'expected a local time like "07:30", got {show(value)}')
        return time(int(match.group(1)), int(match.group(2)))

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            expected = f'expected a time zone like "America/Chicago", got {show(value)}'
            raise problem(expected) from None
        return value

    @model_validator(mode="after")
    def _check_purpose(self) -> NotifyTarget:
        if not self.events and self.digest is None:
            raise problem("give events, a digest, or both", at=("events",))
        if self.digest is None and (self.timezone is not None or self.skip_empty):
            raise problem("timezone and skip_empty apply to a digest: add digest", at=("digest",))
        return self

    @property
    def tzinfo(self) -> tzinfo | None:
        """The digest's time zone; None means the machine's local time."""
        return ZoneInfo(self.timezone) if self.timezone is not None else None

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, data: Any, info: ValidationInfo) -> Any:
        return read_secret_files(data, ("url",), base_dir(info))

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        if not _SCHEME.match(value.get_secret_value()):
            raise problem('expected an Apprise URL like "mailto://..." or "ntfy://..."')
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _check_events(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise problem(f"expected a list of event names, got {show(value)}")
        found: list[tuple[Loc, str]] = [
            ((index,), f"unknown event {show(event)} (expected one of {', '.join(EVENTS)})")
            for index, event in enumerate(value)
            if event not in EVENTS
        ]
        if found:
            raise problems(found)
        return tuple(dict.fromkeys(value))

    @property
    def display_url(self) -> str:
        """The URL's scheme only (`mailto://...`): enough to tell targets apart in logs."""
        match = _SCHEME.match(self.url.get_secret_value())
        return f"{match.group(1)}://..." if match else "..."


class OfflineConfig(StrictModel):
    """The configuration as the commands that never log in see it (`check`, `test-rules`,
    `explain --job-file`, `history`, `silence`). Build it with `load_offline_config`.

    `tapis` is None when its section needs what this environment lacks (an unset `${VAR}`, an
    unreadable `*_file`); `tapis_deferred` then says what, one line per key. Everything else is
    validated as strictly as for `run`.
    """

    tapis: TapisSettings | None = None
    tapis_deferred: tuple[str, ...] = ()
    poll: PollSettings = PollSettings()
    state: StateSettings = StateSettings()
    safety: SafetySettings = SafetySettings()
    rules: tuple[RuleConfig, ...] = ()
    budgets: tuple[BudgetConfig, ...] = ()
    charge_rates: ChargeRates = ChargeRates()
    metrics: MetricsSettings | None = None
    notify: tuple[NotifyTarget, ...] = ()
    source: str = ""

    @model_validator(mode="after")
    def _check_rules(self) -> OfflineConfig:
        found: list[tuple[Loc, str]] = []
        first: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            if rule.name in first:
                found.append((("rules", index, "name"), _duplicate(rule.name, first[rule.name])))
            first.setdefault(rule.name, index)
            never = [s for s in rule.match.status or () if s not in self.poll.statuses]
            if never:
                found.append(
                    (
                        ("rules", index, "match", "status"),
                        (
                            f"{', '.join(never)} never polled "
                            f"(poll.statuses: {', '.join(self.poll.statuses)})"
                        ),
                    )
                )
        found += budget_problems(self.budgets, first, self.charge_rates)
        if found:
            raise problems(found)
        return self


class Config(OfflineConfig):
    """The whole configuration, validated, the identity resolved. Build it with `load_config`."""

    tapis: TapisSettings


def _defaults(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Empty sections mean defaults; the state path defaults under systemd's StateDirectory."""
    data = dict(raw)
    for section in ("poll", "state", "safety"):
        if data.get(section, ...) is None:
            data[section] = {}
    for section in ("rules", "notify", "budgets"):
        if data.get(section, ...) is None:
            data[section] = []
    state = data.setdefault("state", {})
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if isinstance(state, dict) and "path" not in state and state_dir:
        data["state"] = {**state, "path": str(Path(state_dir) / "state.db")}
    return data


def _duplicate_names(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    rules = data.get("rules")
    first: dict[str, int] = {}
    found: list[tuple[Loc, str]] = []
    for index, rule in enumerate(rules if isinstance(rules, list) else []):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            found.append((("rules", index, "name"), _duplicate(name, first[name])))
        first.setdefault(name, index)
    return found


def _duplicate(name: str, first: int) -> str:
    return f"duplicate rule name {show(name)} (also rules[{first}])"


INTERNAL_KEYS = ("source", "tapis_deferred")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, substitute, validate. `env` replaces `os.environ` (for `${VAR}` and STATE_DIRECTORY).

    Raises:
        ConfigError: anything is wrong; `problems` lists every problem found, each naming its
            key path and the bad value (never a secret).
    """
    config = _load(path, env, login=True)
    assert isinstance(config, Config)
    return config


def load_offline_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> OfflineConfig:
    """Like `load_config`, but an unset `${VAR}` or an unreadable `*_file` in the `tapis` section
    is a note in `tapis_deferred` (and `tapis` is None), not an error.

    Raises:
        ConfigError: anything else is wrong, in the `tapis` section too (an unknown key, a bad
            URL or duration, no identity at all).
    """
    return _load(path, env, login=False)


def _load(
    path: str | os.PathLike[str], env: Mapping[str, str] | None, *, login: bool
) -> OfflineConfig:
    environ = os.environ if env is None else env
    file_path = Path(path)
    source = str(path)
    raw = read_yaml(file_path)
    for key in INTERNAL_KEYS:
        if key in raw:
            raise ConfigError([f"{key}: unknown key"], source=source)
    try:
        data, env_problems = substitute_env(raw, environ)
        data = _defaults(data, environ)
        model: type[OfflineConfig] = Config
        found: list[tuple[Loc, str]] = []
        if not login:
            deferred = [item for item in env_problems if item[0][:1] == ("tapis",)]
            env_problems = [item for item in env_problems if item not in deferred]
            found += check_shape(data.get("tapis"), deferred, file_path.parent)
            if deferred:
                model = OfflineConfig
                notes = tuple(f"{key_path(loc, raw)}: {message}" for loc, message in deferred)
                data = {**data, "tapis": None, "tapis_deferred": notes}
        try:
            config = model.model_validate(
                {**data, "source": source}, context={"base_dir": file_path.parent}
            )
        except ValidationError as exc:
            found += env_problems + [
                (loc, message)
                for loc, message in format_errors(exc, model)
                if not any(loc[: len(bad)] == bad for bad, _ in env_problems)
            ]
            # Cross-rule checks run only on a valid model; a duplicate name is worth saying now.
            found += [item for item in _duplicate_names(data) if item not in found]
        else:
            found += env_problems
            if not found:
                return config
    except RecursionError:
        raise ConfigError(["the configuration is nested too deeply"], source=source) from None
    raise ConfigError([f"{key_path(loc, raw)}: {message}" for loc, message in found], source=source)
