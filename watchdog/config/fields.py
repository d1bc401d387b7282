"""Field types shared by the configuration models: durations, counts, names, and their errors.

Every validator here raises `PydanticCustomError` of type `watchdog` with a finished sentence, so
`config_source.format_errors` can print it verbatim after the key path. Values are shown the way a
person wrote them (`"twelve hours"`, `0`), never a secret: secret fields do not use these helpers.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from watchdog.durations import parse_duration

ERROR_TYPE = "watchdog"


class StrictModel(BaseModel):
    """A frozen model that rejects unknown keys: the base of every configuration section."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def show(value: Any) -> str:  # noqa: PLR0911 - one return per kind of value
    """Render a configuration value for an error message: strings quoted, containers by kind."""
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    if isinstance(value, timedelta):
        return json.dumps(compact_duration(value))
    return f"a {type(value).__name__}"


Loc = tuple[str | int, ...]


def problem(message: str, *, at: Loc = ()) -> PydanticCustomError:
    """An error whose message is printed as is; `at` is a key path below the failing location."""
    return problems([(at, message)])


_NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_name(value: Any) -> str:
    """A rule's or a budget's name: letters, digits, - and _ only."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise problem(f"expected letters, digits, - and _ only, got {show(value)}")
    return value


def check_description(value: Any) -> Any:
    """An optional description: a string when given."""
    if value is not None and not isinstance(value, str):
        raise problem(f"expected a string, got {show(value)}")
    return value


def problems(found: list[tuple[Loc, str]]) -> PydanticCustomError:
    """Several errors found by one validator, each `(key path below the location, message)`."""
    summary = "; ".join(message for _, message in found)
    return PydanticCustomError(
        ERROR_TYPE, "{message}", {"message": summary, "problems": tuple(found)}
    )


def compact_duration(delta: timedelta) -> str:
    """A threshold as people write it: `12h`, `1h30m`, `2d`, `45s`."""
    total = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def duration(value: Any) -> timedelta:
    """A configuration duration (`90m`, `1h30m`) as a timedelta.

    Raises:
        PydanticCustomError: not a duration (the message shows the value).
    """
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise problem(f'expected a duration like "90m" or "12h", got {show(value)}')
    try:
        return parse_duration(value)
    except ValueError:
        raise problem(f'expected a duration like "90m" or "12h", got {show(value)}') from None
    except OverflowError:
        raise problem(f"duration too long, got {show(value)}") from None


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise problem(f"must be > 0, got {show(value)}")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("+").isdigit():
        value = int(value)  # `${VAR}` substitution yields strings
    if isinstance(value, bool) or not isinstance(value, int):
        raise problem(f"expected a whole number, got {show(value)}")
    if value <= 0:
        raise problem(f"must be > 0, got {show(value)}")
    return value


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise problem(f"expected a number, got {show(value)}")
    try:
        number = float(value)
    except ValueError:
        raise problem(f"expected a number, got {show(value)}") from None
    except OverflowError:
        number = float("inf")
    if not number > 0 or number == float("inf"):
        raise problem(f"must be a finite number > 0, got {show(value)}")
    return number


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    raise problem(f"expected true or false, got {show(value)}")


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise problem(f"expected a non-empty string, got {show(value)}")
    return value


def _text_list(value: Any) -> tuple[str, ...]:
    """A string or a list of strings, as a tuple; an empty list is fine (nothing listed)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise problem(f"expected a string or a list of strings, got {show(value)}")
    bad: list[tuple[Loc, str]] = [
        ((i,), f"expected a non-empty string, got {show(v)}")
        for i, v in enumerate(value)
        if not _is_text(v)
    ]
    if bad:
        raise problems(bad)
    return tuple(dict.fromkeys(value))


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _non_empty(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise problem("must not be empty")
    return value


Duration = Annotated[timedelta, BeforeValidator(duration)]
PositiveDuration = Annotated[
    timedelta, BeforeValidator(duration), AfterValidator(_positive_duration)
]
PositiveInt = Annotated[int, BeforeValidator(_positive_int)]
PositiveNumber = Annotated[float, BeforeValidator(_positive_number)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, BeforeValidator(_text)]
TextList = Annotated[tuple[str, ...], BeforeValidator(_text_list)]
NonEmptyTextList = Annotated[
    tuple[str, ...], BeforeValidator(_text_list), AfterValidator(_non_empty)
]
