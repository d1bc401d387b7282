"""The Jobs search language: `<attr>.<op>=<value>` conditions, `select`, `orderBy`, paging.

Values are typed by the attribute (integers, booleans, timestamps, strings); lists are
comma-separated with `\\,` `\\(` `\\)` `\\~` `\\\\` escapes; `like` uses `*` (any run) and `!` (one
character) as wildcards, as Tapis does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from watchdog.sim.schema import (
    ALL_FIELDS,
    BOOL_FIELDS,
    INT_FIELDS,
    JSON_STRING_FIELDS,
    LIST_FIELDS,
    TIMESTAMP_FIELDS,
    parse_ts,
)

OPERATORS = frozenset(
    {"eq", "neq", "gt", "gte", "lt", "lte", "in", "nin", "like", "nlike", "between", "nbetween",
     "contains", "ncontains"}
)  # fmt: skip
SEARCHABLE = frozenset(ALL_FIELDS) - JSON_STRING_FIELDS
_SNAKE = {re.sub(r"(?<!^)(?=[A-Z])", "_", f).lower(): f for f in ALL_FIELDS}


class SearchError(ValueError):
    """A search request Tapis would refuse with 400; the message is sent back."""


class Searchable(Protocol):
    def value(self, attr: str) -> Any: ...


J = TypeVar("J", bound=Searchable)


def split_list(text: str) -> list[str]:
    """Split a comma list, honouring backslash escapes."""
    items: list[str] = []
    buf: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            buf.append(next(chars, "\\"))
        elif ch == ",":
            items.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    items.append("".join(buf))
    return items


def unescape(text: str) -> str:
    """Drop the escaping backslashes of a single value."""
    return re.sub(r"\\(.)", r"\1", text)


def attribute(name: str) -> str:
    """The record field a search names (camelCase or snake_case).

    Raises:
        SearchError: no such searchable field.
    """
    field = name if name in SEARCHABLE else _SNAKE.get(name)
    if field is None or field not in SEARCHABLE:
        msg = f"SEARCH_INVALID_ATTRIBUTE The attribute {name!r} is not a searchable job attribute."
        raise SearchError(msg)
    return field


def typed(attr: str, text: str) -> Any:
    """Convert a condition value to the attribute's type.

    Raises:
        SearchError: the value does not fit the attribute.
    """
    try:
        if attr in INT_FIELDS:
            return int(text)
        if attr in TIMESTAMP_FIELDS:
            return parse_ts(text.removesuffix("Z") if len(text) == 11 else text)
    except ValueError as exc:
        msg = f"SEARCH_INVALID_VALUE Value {text!r} is not valid for attribute {attr}."
        raise SearchError(msg) from exc
    if attr in BOOL_FIELDS:
        if text.lower() not in {"true", "false"}:
            msg = f"SEARCH_INVALID_VALUE Value {text!r} is not a boolean for attribute {attr}."
            raise SearchError(msg)
        return text.lower() == "true"
    return text


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif ch == "*":
            out.append(".*")
        elif ch == "!":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


Predicate = Callable[[Searchable], bool]


def _compare(attr: str, op: str, value: Any) -> Predicate:
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: a == b,
        "neq": lambda a, b: a != b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    fn = ops[op]
    if op == "neq":
        return lambda job: (v := job.value(attr)) is None or fn(v, value)
    return lambda job: (v := job.value(attr)) is not None and fn(v, value)


def condition(key: str, raw: str) -> Predicate:  # noqa: C901, PLR0911, PLR0912 - one branch per operator
    """Compile one `<attr>.<op>=<value>` query parameter.

    Raises:
        SearchError: no operator, an unknown operator or attribute, or a bad value.
    """
    name, dot, op = key.rpartition(".")
    if not dot or not name:
        msg = (
            f"SEARCH_NO_OPERATOR The query parameter {key!r} has no operator; "
            "use <attribute>.<operator>=<value>, e.g. status.eq=RUNNING."
        )
        raise SearchError(msg)
    if op not in OPERATORS:
        msg = f"SEARCH_INVALID_OPERATOR Unknown search operator {op!r} in {key!r}."
        raise SearchError(msg)
    attr = attribute(name)
    if attr in LIST_FIELDS:
        if op not in {"contains", "ncontains"}:
            msg = f"SEARCH_INVALID_OPERATOR Attribute {attr} only supports contains and ncontains."
            raise SearchError(msg)
        item = unescape(raw)
        if op == "contains":
            return lambda job: item in (job.value(attr) or ())
        return lambda job: item not in (job.value(attr) or ())
    if op in {"contains", "ncontains"}:
        msg = f"SEARCH_INVALID_OPERATOR Operator {op} applies only to array attributes, not {attr}."
        raise SearchError(msg)
    if op in {"in", "nin"}:
        members = frozenset(typed(attr, v) for v in split_list(raw))
        if op == "in":
            return lambda job: job.value(attr) in members
        return lambda job: job.value(attr) not in members
    if op in {"between", "nbetween"}:
        bounds = split_list(raw)
        if len(bounds) != 2:
            msg = f"SEARCH_INVALID_VALUE {key} needs exactly two comma-separated values."
            raise SearchError(msg)
        low, high = typed(attr, bounds[0]), typed(attr, bounds[1])
        if op == "between":
            return lambda job: (v := job.value(attr)) is not None and low <= v <= high
        return lambda job: (v := job.value(attr)) is not None and not low <= v <= high
    if op in {"like", "nlike"}:
        if attr in INT_FIELDS | BOOL_FIELDS | TIMESTAMP_FIELDS:
            msg = f"SEARCH_INVALID_OPERATOR Operator {op} applies only to text, not {attr}."
            raise SearchError(msg)
        pattern = _like(raw)
        if op == "like":
            return lambda job: (v := job.value(attr)) is not None and bool(pattern.fullmatch(v))
        return lambda job: (v := job.value(attr)) is None or not pattern.fullmatch(v)
    return _compare(attr, op, typed(attr, unescape(raw)))


@dataclass(frozen=True)
class Order:
    attr: str
    desc: bool


def sort_jobs(jobs: Iterable[J], orders: Sequence[Order]) -> list[J]:
    """Sort like PostgreSQL: NULLs last ascending, first descending; stable for ties."""
    out = list(jobs)
    for order in reversed(orders):
        attr = order.attr
        out.sort(key=lambda j: ((v := j.value(attr)) is None, v), reverse=order.desc)
    return out


def int_param(params: dict[str, str], name: str, default: int) -> int:
    """Read an integer query parameter.

    Raises:
        SearchError: not an integer.
    """
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        msg = f"SEARCH_INVALID_VALUE {name} must be an integer, got {raw!r}."
        raise SearchError(msg) from exc
