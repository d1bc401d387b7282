"""The schema of one rule in the configuration: `match` selectors, `when` conditions, the action.

Validation is strict on purpose: a rule is a standing order to cancel jobs, so every glob and RE2
pattern is checked here, at load, and a `when` that says nothing is refused (a typo must not turn
a rule into "cancel everything").
"""

from __future__ import annotations

from typing import Any, Literal

import re2
from pydantic import Field, field_validator, model_validator

from watchdog.config.fields import (
    Flag,
    Loc,
    NonEmptyTextList,
    PositiveDuration,
    PositiveNumber,
    StrictModel,
    check_description,
    check_name,
    problem,
    problems,
    show,
)
from watchdog.jobs import ALL_STATUSES

INPUT_SOURCES: tuple[str, ...] = (
    "file_inputs",
    "app_args",
    "container_args",
    "scheduler_options",
    "env",
    "name",
    "description",
)
CONDITION_KEYS: tuple[str, ...] = (
    "runtime_over",
    "age_over",
    "in_status_over",
    "node_hours_over",
    "input_matches",
    "any",
    "not",
)


def compile_pattern(pattern: str) -> Any:
    """Compile an RE2 pattern (linear-time matching on inputs written by whoever submits a job).

    Raises:
        ValueError: the pattern is not valid RE2; the message says why.
    """
    options = re2.Options()
    options.log_errors = False  # errors are reported as configuration problems, not on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        raise ValueError(text) from None
    except (UnicodeError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def _checked_pattern(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise problem(f"expected an RE2 pattern string, got {show(value)}")
    try:
        regex = compile_pattern(value)
    except ValueError as exc:
        raise problem(f"invalid RE2 pattern {show(value)}: {exc}") from None
    if regex.search("") is not None:
        raise problem(f"pattern {show(value)} matches the empty string, so it matches every job")
    return value


def _statuses(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise problem(f"expected a status or a list of statuses, got {show(value)}")
    if not value:
        raise problem("must not be empty")
    bad: list[tuple[Loc, str]] = [
        ((i,), f"unknown status {show(s)} (expected one of {', '.join(ALL_STATUSES)})")
        for i, s in enumerate(value)
        if s not in ALL_STATUSES
    ]
    if bad:
        raise problems(bad)
    return tuple(dict.fromkeys(value))


class Match(StrictModel):
    """Selectors: every one given must hold. A list means any of its globs or statuses."""

    app: NonEmptyTextList | None = None
    exec_system: NonEmptyTextList | None = None
    owner: NonEmptyTextList | None = None
    name: NonEmptyTextList | None = None
    queue: NonEmptyTextList | None = None
    status: tuple[str, ...] | None = None
    tags_any: NonEmptyTextList | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _check_status(cls, value: Any) -> Any:
        return None if value is None else _statuses(value)


class InputMatch(StrictModel):
    """`input_matches`: an RE2 pattern searched in the job's input strings (`in` narrows them)."""

    pattern: str
    sources: tuple[str, ...] = Field(default=INPUT_SOURCES, alias="in")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str) or data is None:
            return {"pattern": _checked_pattern(data)}
        return data

    @field_validator("pattern", mode="before")
    @classmethod
    def _check_pattern(cls, value: Any) -> str:
        return _checked_pattern(value)

    @field_validator("sources", mode="before")
    @classmethod
    def _check_sources(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise problem(f"expected a non-empty list of input kinds, got {show(value)}")
        bad: list[tuple[Loc, str]] = [
            ((i,), f"unknown input kind {show(s)} (expected one of {', '.join(INPUT_SOURCES)})")
            for i, s in enumerate(value)
            if s not in INPUT_SOURCES
        ]
        if bad:
            raise problems(bad)
        return tuple(dict.fromkeys(value))


class Conditions(StrictModel):
    """A condition map: every condition given must hold; `any` and `not` nest further maps."""

    runtime_over: PositiveDuration | None = None
    age_over: PositiveDuration | None = None
    in_status_over: PositiveDuration | None = None
    node_hours_over: PositiveNumber | None = None
    input_matches: InputMatch | None = None
    any_of: tuple[Conditions, ...] | None = Field(default=None, alias="any")
    negated: Conditions | None = Field(default=None, alias="not")

    @field_validator("any_of", mode="before")
    @classmethod
    def _check_any(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, list | tuple) or not value):
            raise problem(f"expected a non-empty list of condition maps, got {show(value)}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and not any(data.get(k) is not None for k in CONDITION_KEYS):
            if any(k in CONDITION_KEYS for k in data) or not data:
                raise problem(f"needs at least one condition ({', '.join(CONDITION_KEYS)})")
        elif data is None:
            raise problem(f"needs at least one condition ({', '.join(CONDITION_KEYS)})")
        return data


class RuleConfig(StrictModel):
    """One rule as written in the configuration."""

    name: str
    description: str | None = None
    match: Match = Match()
    when: Conditions
    grace: PositiveDuration | None = None
    action: Literal["cancel", "warn"]
    dry_run: Flag | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> str:
        return check_name(value)

    @field_validator("description", mode="before")
    @classmethod
    def _check_description(cls, value: Any) -> Any:
        return check_description(value)

    @field_validator("match", mode="before")
    @classmethod
    def _default_match(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("action", mode="before")
    @classmethod
    def _check_action(cls, value: Any) -> Any:
        if value not in ("cancel", "warn"):
            raise problem(f'expected "cancel" or "warn", got {show(value)}')
        return value
