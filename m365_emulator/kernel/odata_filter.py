"""The OData `$filter` subset Outlook resources accept: or / and / not, comparisons, startswith / endswith /
contains and `collection/any(x: ...)` lambdas, compiled to a predicate over a resource dict."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from m365_emulator.kernel.graph import GraphError, bad_request, canonical_extended_id


class FilterSyntaxError(ValueError):
    pass


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[(),:])"
                    r"|(?P<word>[A-Za-z_@$][A-Za-z0-9_./@$-]*))")

Record = Mapping[str, Any]
Predicate = Callable[[Record, dict[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise FilterSyntaxError(f"unexpected text at {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _FilterParser:
    """Recursive descent over: or / and / not, comparisons (eq ne gt ge lt le), startswith/endswith/contains,
    and `collection/any(x: ...)` lambdas: enough for Outlook's documented contact filters."""

    def __init__(self, text: str, known: set[str] | None) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.known = known  # lower-case property names of the resource, or None to accept any
        self.variables: list[str] = []  # lambda variables in scope

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1].lower() != value):
            raise FilterSyntaxError(f"expected {value or 'a token'}")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise FilterSyntaxError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return pred

    def or_expr(self) -> Predicate:
        left = self.and_expr()
        while (t := self.peek()) and t[0] == "word" and t[1].lower() == "or":
            self.take()
            right = self.and_expr()
            left = (lambda a, b: lambda r, env: a(r, env) or b(r, env))(left, right)
        return left

    def and_expr(self) -> Predicate:
        left = self.unary()
        while (t := self.peek()) and t[0] == "word" and t[1].lower() == "and":
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda r, env: a(r, env) and b(r, env))(left, right)
        return left

    def unary(self) -> Predicate:
        t = self.peek()
        if t and t[0] == "word" and t[1].lower() == "not":
            self.take()
            inner = self.unary()
            return lambda r, env: not inner(r, env)
        if t and t[1] == "(":
            self.take("(")
            inner = self.or_expr()
            self.take(")")
            return inner
        return self.comparison()

    def operand(self) -> Callable[[Record, dict[str, Any]], Any]:
        kind, text = self.take()
        if kind == "str":
            value = text[1:-1].replace("''", "'")
            return lambda r, env: value
        if kind == "num":
            number = float(text) if "." in text else int(text)
            return lambda r, env: number
        if kind != "word":
            raise FilterSyntaxError(f"unexpected {text!r}")
        lowered = text.lower()
        if lowered in ("null", "true", "false"):
            constant = {"null": None, "true": True, "false": False}[lowered]
            return lambda r, env: constant
        if lowered in ("startswith", "endswith", "contains") and self.peek() == ("punct", "("):
            self.take("(")
            a = self.operand()
            self.take(",")
            b = self.operand()
            self.take(")")
            test = {"startswith": str.startswith, "endswith": str.endswith, "contains": str.__contains__}[lowered]

            def call(r: Record, env: dict[str, Any]) -> bool:
                x, y = a(r, env), b(r, env)
                return isinstance(x, str) and isinstance(y, str) and test(x.lower(), y.lower())
            return call
        # a property path, maybe ending in a lambda: emailAddresses/any(a: a/address eq 'x')
        segments = text.split("/")
        if segments[-1].lower() in ("any", "all") and self.peek() == ("punct", "("):
            quantifier = segments[-1].lower()
            path = segments[:-1]
            self._check_property(path[0])
            self.take("(")
            var = self.take()[1]
            self.take(":")
            self.variables.append(var)
            body = self.or_expr()
            self.variables.pop()
            self.take(")")

            def lam(r: Record, env: dict[str, Any]) -> bool:
                coll = _resolve(r, env, path)
                if not isinstance(coll, list):
                    return False
                results = (body(r, {**env, var: member}) for member in coll)
                return any(results) if quantifier == "any" else all(results)
            return lam
        self._check_property(segments[0])
        return lambda r, env: _resolve(r, env, segments)

    def _check_property(self, name: str) -> None:
        if self.known is not None and name not in self.variables and name.lower() not in self.known:
            raise FilterSyntaxError(f"Could not find a property named '{name}'")

    def comparison(self) -> Predicate:
        left = self.operand()
        t = self.peek()
        if t is None or t[0] != "word" or t[1].lower() not in ("eq", "ne", "gt", "ge", "lt", "le"):
            return lambda r, env: bool(left(r, env))
        op = self.take()[1].lower()
        right = self.operand()

        def compare(r: Record, env: dict[str, Any]) -> bool:
            a, b = left(r, env), right(r, env)
            if isinstance(a, str) and isinstance(b, str):
                a, b = a.lower(), b.lower()  # Exchange string comparisons ignore case
            if op == "eq":
                return bool(a == b)
            if op == "ne":
                return bool(a != b)
            if a is None or b is None:
                return False
            try:
                return bool({"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op])
            except TypeError:
                return False
        return compare


def _resolve(record: Record, env: dict[str, Any], path: list[str]) -> Any:
    head, rest = path[0], path[1:]
    value: Any = env[head] if head in env else _get_ci(record, head)
    for segment in rest:
        value = _get_ci(value, segment) if isinstance(value, Mapping) else None
    return value


def _get_ci(record: Any, name: str) -> Any:
    if not isinstance(record, Mapping):
        return None
    if name in record:
        return record[name]
    lowered = name.lower()
    return next((v for k, v in record.items() if k.lower() == lowered), None)


def compile_filter(text: str, known: Iterable[str] | None = None) -> Predicate:
    """A predicate over a resource dict; GraphError 400 for what we cannot parse or for a property that is not
    in `known` (the resource's property names), as Graph refuses both."""
    try:
        return _FilterParser(text, {k.lower() for k in known} if known is not None else None).parse()
    except FilterSyntaxError as exc:
        raise bad_request(f"Invalid filter clause: {exc}", "ErrorInvalidUrlQueryFilter") from None


def canonicalise_filter(text: str) -> str:
    """Extended-property ids inside a filter compare against stored canonical ids."""
    def fix(m: re.Match[str]) -> str:
        literal = m.group(2).replace("''", "'")
        try:
            canonical = canonical_extended_id(literal)
        except GraphError:
            return m.group(0)
        return m.group(1) + "'" + canonical.replace("'", "''") + "'"
    return re.sub(r"(\bid\s+eq\s+)'((?:[^']|'')*)'", fix, text, flags=re.IGNORECASE)
