"""The shared query-parameter filter (`QueryParametersRequestFilter.filter`, tapis-shared-java).

It runs before the resource method, only when one of its parameters is present, and refuses with
**plain-text** 400s: a parameter given twice, a non-integer `limit`/`skip`, a bad `orderBy` item
or attribute name, a bad `search`, `startAfter` without `orderBy`, `startAfter` beside any `skip`.
The condition form check (`SearchUtils.validateSearchConditionForm`) is here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchdog.sim.api import Caller, Reply, plain

if TYPE_CHECKING:
    from collections.abc import Sequence

_FILTER_PARAMS = ("search", "limit", "orderBy", "skip", "startAfter", "computeTotal", "select")
_VALID_ATTR = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")
_ORDER_ITEM = re.compile(r"([^()]*?)(?:\((asc|desc)\))?", re.IGNORECASE)
_OPERATORS = frozenset(
    {"EQ", "NEQ", "GT", "GTE", "LT", "LTE", "IN", "NIN", "LIKE", "NLIKE", "BETWEEN", "NBETWEEN",
     "CONTAINS", "NCONTAINS"}
)  # fmt: skip
_LIST_OPERATORS = frozenset({"IN", "NIN", "BETWEEN", "NBETWEEN", "CONTAINS", "NCONTAINS"})
_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True, slots=True)
class Paging:
    """What the shared request filter put in the thread's `SearchParameters`."""

    select: tuple[str, ...] = ()
    limit: int | None = None
    order_text: str | None = None
    orders: tuple[tuple[str, bool], ...] = ()
    skip: int = 0
    start_after: str | None = None
    compute_total: bool = False


def prefix(caller: Caller) -> str:
    return (
        f"Tenant: {caller.tenant} ApiUserId: {caller.username} OboTenant: {caller.tenant} "
        f"OboUser: {caller.username}"
    )


def as_int(text: str) -> int | None:
    try:
        value = int(text, 10)
    except ValueError:
        return None
    return value if _INT32[0] <= value <= _INT32[1] and text.strip() == text else None


def request_filter(params: Sequence[tuple[str, str]], caller: Caller) -> Paging | Reply:  # noqa: C901, PLR0911 - one check per parameter, in the filter's order
    """`QueryParametersRequestFilter.filter`: the paging parameters, or its plain-text 400."""
    values: dict[str, list[str]] = {}
    for key, value in params:
        values.setdefault(key, []).append(value)
    if not any(name in values for name in _FILTER_PARAMS):
        return Paging()
    who = prefix(caller)

    def one(name: str) -> str | Reply | None:
        got = values.get(name)
        if got is not None and len(got) != 1:
            return plain(
                400,
                "TAPIS_QUERY_PARAM_MULTIPLE Invalid query parameter. Multiple values specified. "
                f"{who} Parameter name: {name}",
            )
        return got[0] if got else None

    def not_int(name: str, raw: str) -> Reply:
        return plain(
            400,
            "TAPIS_QUERY_PARAM_NOTINT Invalid query parameter. Must be integer. "
            f"{who} Parameter name: {name} Value: {raw}",
        )

    got: dict[str, str | None] = {}
    for name in ("computeTotal", "select", "search", "limit", "orderBy", "skip", "startAfter"):
        raw = one(name)
        if isinstance(raw, Reply):
            return raw
        got[name] = raw
        if name == "search" and raw and raw.strip() and (problem := _search_problem(raw)):
            return plain(400, f"SEARCH_LIST_ERROR Unable to validate search list. {who} " + problem)
        if name == "limit" and raw and raw.strip() and as_int(raw) is None:
            return not_int(name, raw)
        if name == "orderBy" and raw and raw.strip() and (problem := _order_problem(raw)):
            return plain(
                400,
                "TAPIS_QUERY_PARAM_ORDERBY_ERROR Invalid orderBy query parameter. "
                f"{who} Parameter value: {problem}",
            )
        if name == "skip" and raw and raw.strip() and as_int(raw) is None:
            return not_int(name, raw)
    order_text = got["orderBy"] if got["orderBy"] and got["orderBy"].strip() else None
    orders = _orders(order_text) if order_text else ()
    start_after = got["startAfter"] if got["startAfter"] and got["startAfter"].strip() else None
    if start_after is not None and not orders:
        return plain(
            400,
            f"TAPIS_QUERY_PARAM_INVALID_PAIR1 Invalid query parameters. {who} Parameter "
            "startAfter specified with no corresponding value specified for parameter orderBy",
        )
    skip_raw = got["skip"]
    if start_after is not None and skip_raw and skip_raw.strip():
        return plain(
            400,
            f"TAPIS_QUERY_PARAM_INVALID_PAIR2 Invalid query parameters. {who} Parameter "
            "startAfter and parameter skip may not both be specified",
        )
    limit_raw, total_raw, select_raw = got["limit"], got["computeTotal"], got["select"]
    return Paging(
        select=tuple(re.split(r"(?<!\\),", select_raw))
        if select_raw and select_raw.strip()
        else (),
        limit=as_int(limit_raw) if limit_raw and limit_raw.strip() else None,
        order_text=order_text,
        orders=orders,
        skip=as_int(skip_raw) or 0 if skip_raw and skip_raw.strip() else 0,
        start_after=start_after,
        compute_total=(total_raw or "").lower() == "true",
    )


def _order_problem(text: str) -> str | None:
    """`SearchUtils.checkOrderByQueryParam`: the error text, or None."""
    for item in re.split(r"(?<!\\),", text):
        match = _ORDER_ITEM.fullmatch(item.strip())
        if match is None or not match.group(1).strip():
            return f"orderBy entry invalid. Entry: {item}. OrderBy list: {text}"
        if not _VALID_ATTR.fullmatch(match.group(1).strip()):
            return f"Invalid attribute name for item: {item}. OrderBy list: {text}"
    return None


def _orders(text: str) -> tuple[tuple[str, bool], ...]:
    out = []
    for item in re.split(r"(?<!\\),", text):
        match = _ORDER_ITEM.fullmatch(item.strip())
        assert match is not None  # checked by _order_problem
        out.append((match.group(1).strip(), (match.group(2) or "asc").lower() == "desc"))
    return tuple(out)


def form_problem(cond: str) -> str | None:  # noqa: PLR0911 - one answer per check
    """`SearchUtils.validateSearchConditionForm` on `<attr>.<op>.<value>`: the error, or None."""
    attr, dot, rest = cond.partition(".")
    if not dot or not attr.strip():
        return (
            f"SEARCH_COND_INVALID_NOATTR Invalid search condition. No attribute. Condition: {cond}"
        )
    if not _VALID_ATTR.match(attr):
        return (
            f"SEARCH_COND_INVALID_ATTR <attribute> contains invalid character(s). Condition: {cond}"
        )
    op, dot, value = rest.partition(".")
    if not dot or not op.strip():
        return (
            f"SEARCH_COND_INVALID_NOOPER Invalid search condition. No operator. Condition: {cond}"
        )
    if op.upper() not in _OPERATORS:
        return f"SEARCH_COND_INVALID_OP <operator> not supported. Operator: {op} Condition: {cond}"
    if not value.strip():
        return f"SEARCH_COND_INVALID_NOVAL Invalid search condition. No value. Condition: {cond}"
    values = re.split(r"(?<!\\),", value) if op.upper() in _LIST_OPERATORS else [value]
    if any(re.search(r"(?<!\\)[~,()]", v) for v in values):
        return f"SEARCH_COND_INVALID_VAL Value contained unescaped special character(s): {cond}"
    if op.upper() in {"BETWEEN", "NBETWEEN"} and len(values) != 2:
        return f"SEARCH_COND_INVALID_OP2 {op.upper()} needs two values. Condition: {cond}"
    return None


def _search_problem(text: str) -> str | None:
    for part in re.findall(r"(?:\\.|[^~\\])+", text):
        if not part.startswith("(") and not part.endswith(")") and "~" not in text:
            part = f"({part})"  # noqa: PLW2901 - a single condition may go without parentheses
        if not (part.startswith("(") and part.endswith(")")):
            return f"SEARCH_COND_UNBALANCED Unbalanced parentheses for search condition: {part}"
        if part[1:-1].strip() and (problem := form_problem(part[1:-1])):
            return problem
    return None
