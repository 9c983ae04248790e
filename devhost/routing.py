"""ASP.NET Core route templates as Azure Functions HTTP triggers use them.

Supported: literal segments (case-insensitive), `{name}`, constraints `{id:int}` (chained `{id:int:min(1)}`),
optional `{name?}`, defaults `{name=value}`, and a final catch-all `{*rest}` / `{**rest}`. A segment that mixes
text and parameters (`{a}.{b}`) is refused with RouteError rather than matched wrongly.

Precedence follows ASP.NET's inbound ordering: segment by segment, a literal beats a constrained parameter,
which beats a plain parameter, which beats a catch-all.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote

_PARAM = re.compile(r"^\{(?P<star>\*{1,2})?(?P<body>[^{}]+)\}$")

Check = Callable[[str], bool]


class RouteError(ValueError):
    """The route template cannot be served; the message names the problem in one line."""


def _is_int(text: str, bits: int) -> bool:
    if not re.fullmatch(r"[+-]?\d+", text):
        return False
    return -(2 ** (bits - 1)) <= int(text) < 2 ** (bits - 1)


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return bool(re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text))


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


_SIMPLE: dict[str, Check] = {
    "int": lambda v: _is_int(v, 32),
    "long": lambda v: _is_int(v, 64),
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
    "guid": _is_guid,
    "decimal": _is_number,
    "double": _is_number,
    "float": _is_number,
    "datetime": _is_datetime,
    "required": lambda v: v != "",
}


def _numbers(args: str, count: int, constraint: str) -> list[int]:
    parts = [p.strip() for p in args.split(",")]
    if len(parts) != count or not all(re.fullmatch(r"-?\d+", p) for p in parts):
        raise RouteError(f"route constraint {constraint}({args}) needs {count} whole number(s)")
    return [int(p) for p in parts]


def _constraint(text: str) -> Check:
    name, _, rest = text.partition("(")
    name = name.strip().lower()
    if not rest:
        if name not in _SIMPLE:
            raise RouteError(f"route constraint '{text}' is not supported")
        return _SIMPLE[name]
    if not rest.endswith(")"):
        raise RouteError(f"route constraint '{text}' is missing its closing parenthesis")
    args = rest[:-1]
    if name == "regex":
        pattern = re.compile(args, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    if name in ("min", "max"):
        (bound,) = _numbers(args, 1, name)
        if name == "min":
            return lambda v: _is_int(v, 64) and int(v) >= bound
        return lambda v: _is_int(v, 64) and int(v) <= bound
    if name == "range":
        low, high = _numbers(args, 2, name)
        return lambda v: _is_int(v, 64) and low <= int(v) <= high
    if name in ("minlength", "maxlength"):
        (size,) = _numbers(args, 1, name)
        return (lambda v: len(v) >= size) if name == "minlength" else (lambda v: len(v) <= size)
    if name == "length":
        sizes = _numbers(args, args.count(",") + 1, name)
        if len(sizes) == 1:
            return lambda v: len(v) == sizes[0]
        if len(sizes) == 2:
            return lambda v: sizes[0] <= len(v) <= sizes[1]
    raise RouteError(f"route constraint '{text}' is not supported")


def _split_constraints(body: str) -> list[str]:
    """Split `id:int:regex(^a:b$)` on colons that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in body:
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += (char == "(") - (char == ")")
        current += char
    parts.append(current)
    return parts


@dataclass(frozen=True)
class Segment:
    literal: str | None = None
    name: str | None = None
    checks: tuple[Check, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    @property
    def rank(self) -> int:
        """ASP.NET inbound precedence digit: lower matches first."""
        if self.literal is not None:
            return 1
        if self.catch_all:
            return 5
        return 3 if self.checks else 4


def _parse_segment(text: str, template: str) -> Segment:
    if "{" not in text and "}" not in text:
        return Segment(literal=text)
    match = _PARAM.match(text)
    if match is None:
        raise RouteError(f"route '{template}': segment '{text}' mixes text and parameters, which devhost does not serve")
    body = match.group("body")
    default = None
    if "=" in body:
        body, _, default = body.partition("=")
    optional = body.endswith("?")
    body = body.rstrip("?")
    name, *constraints = _split_constraints(body)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteError(f"route '{template}': '{name}' is not a valid parameter name")
    return Segment(name=name, checks=tuple(_constraint(c) for c in constraints if c),
                   optional=optional, default=default, catch_all=bool(match.group("star")))


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, template: str) -> "RouteTemplate":
        cleaned = template.strip().strip("/")
        segments = tuple(_parse_segment(part, template) for part in cleaned.split("/")) if cleaned else ()
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if segment.catch_all and not last:
                raise RouteError(f"route '{template}': a catch-all parameter must be the last segment")
            if segment.optional and not last:
                raise RouteError(f"route '{template}': only the last parameter may be optional")
        names = [s.name for s in segments if s.name]
        if len(names) != len(set(n.lower() for n in names)):
            raise RouteError(f"route '{template}': a parameter name is used twice")
        return cls(template, segments)

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(segment.rank for segment in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (no prefix, no query), or None when it does not match."""
        raw = path.strip("/")
        parts = raw.split("/") if raw else []
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.catch_all:
                rest = "/".join(unquote(p) for p in parts[index:]) or (segment.default or "")
                if not rest:
                    # An empty catch-all matches but yields no value (ASP.NET leaves it unset).
                    return values
                if not all(check(rest) for check in segment.checks):
                    return None
                values[segment.name or ""] = rest
                return values
            if index >= len(parts):
                if segment.optional:
                    return values
                if segment.default is not None:
                    values[segment.name or ""] = segment.default
                    continue
                return None
            part = unquote(parts[index])
            if segment.literal is not None:
                if part.lower() != segment.literal.lower():
                    return None
                continue
            if part == "" or not all(check(part) for check in segment.checks):
                return None
            values[segment.name or ""] = part
        if len(parts) > len(self.segments):
            return None
        return values
