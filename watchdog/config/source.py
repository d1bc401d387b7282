"""From a file to plain data, and from validation errors back to sentences a person can act on.

Reads the YAML (duplicate keys are errors: a second `runtime_over` must not silently win),
refusing a file over `MAX_CONFIG_BYTES` and a document whose aliases would expand it by more than
`MAX_ALIAS_VALUES` values (a ten-line "billion laughs" file must not hang `check`), with libyaml's
C parser where PyYAML was built with it; replaces `${VAR}` from the environment, reads `*_file`
secrets, and turns pydantic's errors into
`rules[2] (frontera-12h).when.runtime_over: expected a duration ...` lines. Secret values never
reach a message.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from watchdog.config.fields import ERROR_TYPE, Loc, problem, problems, show
from watchdog.errors import ConfigError

SECRET_KEYS = frozenset({"password", "access_token", "client_key", "url"})
_VAR = re.compile(r"\$(\$)?\{([^}]*)\}")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_CONFIG_BYTES = 1024 * 1024
"""A configuration is a few kilobytes; anything past this is refused before it is parsed."""
MAX_ALIAS_VALUES = 100_000
"""How many values YAML aliases (and merge keys) may add to a document by repeating nodes."""

# libyaml parses about ten times faster; the constructor (duplicate keys, types) stays Python.
if TYPE_CHECKING or not yaml.__with_libyaml__:  # noqa: SIM108 - mypy needs one class to subclass
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = yaml.CSafeLoader


class _AliasBombError(ValueError):
    """The document repeats nodes through aliases far beyond what a configuration needs."""


class _Loader(_SafeLoader):
    """A safe loader that refuses duplicate keys and alias expansion past `MAX_ALIAS_VALUES`."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        check_expansion(node, MAX_ALIAS_VALUES)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_expansion(root: yaml.Node, bound: int) -> None:
    """Refuse a node graph whose aliases add more than `bound` values, or that contains itself.

    Composed YAML shares an aliased node instead of copying it, so a file of ten lines can stand
    for a billion values that every later step (substitution, validation) would walk one by one.
    This counts the expanded size bottom-up with each node's size computed once (linear in the
    file), and stops as soon as the repeated values alone pass the bound.

    Raises:
        _AliasBombError: the expansion passes the bound, or a node contains itself.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children)
            if size - (len(sizes) + 1) > bound:  # values beyond the distinct ones
                msg = f"YAML aliases expand the document by more than {bound} values"
                raise _AliasBombError(msg)
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in on_path:
            msg = "a YAML alias refers to a node that contains it (a recursive structure)"
            raise _AliasBombError(msg)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def read_yaml(path: Path) -> Any:
    """Read and parse the configuration file.

    Raises:
        ConfigError: the file is missing, unreadable, over `MAX_CONFIG_BYTES`, empty, not valid
            YAML (with its line), or its aliases expand past `MAX_ALIAS_VALUES` values.
    """
    source = str(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(["file not found"], source=source) from None
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source=source) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [f"the file is larger than {MAX_CONFIG_BYTES // 1048576} MiB: not a configuration"],
            source=source,
        )
    try:
        parsed = yaml.load(data, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except _AliasBombError as exc:
        raise ConfigError([f"refused: {exc}"], source=source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError([f"invalid YAML at {where}{what}"], source=source) from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        # PyYAML raises ValueError for impossible dates such as 2024-13-40.
        raise ConfigError([f"invalid YAML: {exc}"], source=source) from None
    if parsed is None:
        raise ConfigError(["the file is empty"], source=source)
    if not isinstance(parsed, dict):
        raise ConfigError(
            [f"expected a mapping at the top level, got {show(parsed)}"], source=source
        )
    return parsed


def substitute_env(
    data: Any, env: Mapping[str, str], loc: Loc = ()
) -> tuple[Any, list[tuple[Loc, str]]]:
    """Replace `${VAR}` in every string (`$${VAR}` keeps the text). Returns data and problems.

    Each problem is `(loc, message)`; an unresolved reference is left in place.
    """
    found: list[tuple[Loc, str]] = []

    def walk(value: Any, where: Loc) -> Any:
        if isinstance(value, str):
            return _VAR.sub(lambda m: _replace(m, env, where, found), value)
        if isinstance(value, dict):
            return {k: walk(v, (*where, _loc_part(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*where, i)) for i, v in enumerate(value)]
        return value

    return walk(data, loc), found


def _loc_part(key: Any) -> str | int:
    return key if isinstance(key, str | int) and not isinstance(key, bool) else str(key)


def _replace(
    match: re.Match[str], env: Mapping[str, str], where: Loc, found: list[tuple[Loc, str]]
) -> str:
    escaped, name = match.group(1), match.group(2)
    if escaped:
        return "${" + name + "}"
    if not _VAR_NAME.match(name):
        found.append((where, f"invalid environment variable reference {show(match.group(0))}"))
        return match.group(0)
    if name not in env:
        found.append((where, f"environment variable {name} is not set"))
        return match.group(0)
    return env[name]


def read_secret_files(
    data: Any,
    keys: tuple[str, ...],
    base_dir: Path | None,
    *,
    unreadable: Callable[[tuple[Loc, str]], None] | None = None,
) -> Any:
    """For each `KEY_file` in a mapping, read the file into `KEY` (trailing newlines stripped).

    `unreadable`: where a file that cannot be read (or is empty) is reported instead of raising,
    its key then left unset: the environment may lack it (an offline load), the file is not wrong.

    Raises:
        PydanticCustomError: a file cannot be read or is empty, or both `KEY` and `KEY_file` are
            given; every such problem names its key and the path, never the secret.
    """
    if not isinstance(data, dict):
        return data
    result = dict(data)
    found: list[tuple[Loc, str]] = []
    for key in keys:
        file_key = f"{key}_file"
        path_text = result.get(file_key)
        if path_text is None:
            continue
        if not isinstance(path_text, str) or not path_text:
            found.append(((file_key,), f"expected a file path, got {show(path_text)}"))
            continue
        if result.get(key) is not None:
            found.append(((file_key,), f"give {key} or {file_key}, not both"))
            continue
        path = Path(path_text)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        secret, failure = _read_secret(path)
        if secret is not None:
            result[key] = secret
        elif unreadable is None:
            found.append(((file_key,), failure))
        else:
            unreadable(((file_key,), failure))
            result.pop(file_key)
    if found:
        raise problems(found) if len(found) > 1 else problem(found[0][1], at=found[0][0])
    return result


def _read_secret(path: Path) -> tuple[str | None, str]:
    """The secret in `path`, or None and why not."""
    try:
        secret = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError, ValueError) as exc:
        return None, f"cannot read {show(str(path))}: {_read_failure(exc)}"
    if not secret:
        return None, f"the file {show(str(path))} is empty"
    return secret, ""


def _read_failure(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, UnicodeError):
        return "not UTF-8 text"
    return str(exc)  # such as a NUL byte in the path


def key_path(loc: Loc, raw: Any) -> str:
    """`('rules', 2, 'when')` → `rules[2] (frontera-12h).when`, naming the rule (or budget)
    where known."""
    text = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
        if index == 1 and loc[0] in {"rules", "budgets"} and isinstance(part, int):
            name = _rule_name(raw, part, str(loc[0]))
            if name:
                text += f" ({name})"
    return text or "(top level)"


def _rule_name(raw: Any, index: int, section: str = "rules") -> str | None:
    rules = raw.get(section) if isinstance(raw, dict) else None
    if isinstance(rules, list) and 0 <= index < len(rules) and isinstance(rules[index], dict):
        name = rules[index].get("name")
        if isinstance(name, str) and name:
            return name if len(name) <= 60 else name[:57] + "..."
    return None


def format_errors(exc: ValidationError, root: type[BaseModel]) -> list[tuple[Loc, str]]:
    """Translate pydantic's errors into `(loc, sentence)` pairs, hiding secret values."""
    lines: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == ERROR_TYPE and "problems" in ctx:
            lines.extend(((*loc, *at), message) for at, message in ctx["problems"])
        else:
            lines.append((loc, _describe(error, loc, root)))
    return lines


def _describe(error: Any, loc: Loc, root: type[BaseModel]) -> str:
    kind = error["type"]
    secret = any(isinstance(p, str) and p in SECRET_KEYS for p in loc)
    got = "" if secret else f", got {show(error.get('input'))}"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown key" + _suggestion(loc, root)
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return f"expected a mapping{got}"
    if kind in {"tuple_type", "list_type"}:
        return f"expected a list{got}"
    if kind == "string_type":
        return f"expected a string{got}"
    message = str(error.get("msg", "invalid value"))
    return message[:1].lower() + message[1:] + got


def _suggestion(loc: Loc, root: type[BaseModel]) -> str:
    model = _model_at(root, loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    known = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == part),
            None,
        )
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
