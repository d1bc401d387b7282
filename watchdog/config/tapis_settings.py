"""The `tapis` section: where Tapis is and who the watchdog is.

Only the commands that log in (`run`, `cancel`, `explain UUID`) need the identity, so only they
resolve it in full. The others load the configuration with `load_offline_config`, which checks
this section's shape (known keys, a URL, durations) but lets an unset `${VAR}` or an unreadable
`*_file` secret in it stand as a note instead of an error: `check` on a laptop, or `history` in a
fresh shell, needs no credentials. `TapisSettings.model_validate(..., context=offline_context())`
is that shape check; the notes land in the context's list.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError, ValidationInfo, field_validator, model_validator

from watchdog.config.fields import (
    Loc,
    PositiveDuration,
    PositiveInt,
    StrictModel,
    Text,
    problem,
    problems,
    show,
)
from watchdog.config.source import format_errors, read_secret_files

_BASE_URL = re.compile(r"^https?://[^/\s?#]+(/[^\s?#]*)?$")
SECRET_FIELDS = ("password", "access_token", "client_key")


def base_dir(info: ValidationInfo) -> Path | None:
    """The directory relative `*_file` paths start from (the configuration file's)."""
    context = info.context if isinstance(info.context, dict) else {}
    base = context.get("base_dir")
    return base if isinstance(base, Path) else None


def _deferred(info: ValidationInfo) -> list[tuple[Loc, str]] | None:
    """The notes list of an offline load, or None when the identity must resolve."""
    context = info.context if isinstance(info.context, dict) else {}
    notes = context.get("deferred")
    return notes if isinstance(notes, list) else None


class TapisSettings(StrictModel):
    """Where Tapis is and who the watchdog is. A `*_file` key is read into the secret beside it."""

    base_url: str
    tenant_id: Text
    username: Text | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    access_token: SecretStr | None = None
    access_token_file: str | None = None
    client_id: Text | None = None
    client_key: SecretStr | None = None
    client_key_file: str | None = None
    timeout: PositiveDuration = timedelta(seconds=30)
    max_concurrency: PositiveInt = 8

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, data: Any, info: ValidationInfo) -> Any:
        notes = _deferred(info)
        return read_secret_files(
            data, SECRET_FIELDS, base_dir(info), unreadable=None if notes is None else notes.append
        )

    @field_validator("base_url", mode="before")
    @classmethod
    def _check_base_url(cls, value: Any) -> str:
        if not isinstance(value, str) or not _BASE_URL.match(value.strip()):
            raise problem(
                f'expected an http(s) URL like "https://designsafe.tapis.io", got {show(value)}'
            )
        return value.strip().rstrip("/")

    @field_validator("password", "access_token", "client_key")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise problem("must not be empty")
        return value

    @model_validator(mode="after")
    def _check_identity(self, info: ValidationInfo) -> TapisSettings:
        context = info.context if isinstance(info.context, dict) else {}
        if _deferred(info) or context.get("incomplete"):
            return self  # an offline load left part of the identity for where it logs in
        found: list[tuple[Loc, str]] = []
        if self.username is not None and self.password is None:
            found.append((("password",), "is required with username (or give password_file)"))
        if self.password is not None and self.username is None:
            found.append((("username",), "is required with password"))
        if self.username is None and self.access_token is None:
            found.append(
                (
                    (),
                    (
                        "give username with password or password_file, "
                        "or access_token or access_token_file"
                    ),
                )
            )
        if self.client_id is not None and self.client_key is None:
            found.append((("client_key",), "is required with client_id (or give client_key_file)"))
        if self.client_key is not None and self.client_id is None:
            found.append((("client_id",), "is required with client_key"))
        if found:
            raise problems(found)
        return self


def check_shape(
    section: Any, deferred: list[tuple[Loc, str]], directory: Path
) -> list[tuple[Loc, str]]:
    """Check the `tapis` section without what the environment lacks; returns its problems.

    `deferred` holds the section's unset `${VAR}`s; unreadable `*_file` secrets are added to it.
    Nothing is checked when nothing was deferred: the full validation then does it all.
    """
    if not isinstance(section, dict) or any(len(loc) < 2 for loc, _ in deferred):
        return []
    missing = {loc[1] for loc, _ in deferred}
    shape = {key: value for key, value in section.items() if key not in missing}
    notes: list[tuple[Loc, str]] = []
    context = {"base_dir": directory, "deferred": notes, "incomplete": bool(missing)}
    try:
        TapisSettings.model_validate(shape, context=context)
    except ValidationError as exc:
        found = [
            (("tapis", *loc), message)
            for loc, message in format_errors(exc, TapisSettings)
            if not (loc and loc[0] in missing and message == "is required")
        ]
    else:
        found = []
    deferred.extend((("tapis", *loc), message) for loc, message in notes)
    return found if deferred else []
