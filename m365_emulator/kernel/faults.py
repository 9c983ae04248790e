"""Injected faults: make chosen Graph requests (and `$batch` steps) fail, stall or lose their connection.

A rule (POST /_emulator/faults) matches on method and a regex searched in the path below /v1.0 plus its
query (e.g. "/me/contactFolders/AAMk.../contacts?$top=10"). Options:
  status          answer with this status and Graph's error body (429 uses Microsoft's throttling body)
  retry_after     seconds for a Retry-After header
  times           how many matching requests to affect (default: unlimited)
  probability     chance that a matching request is affected (default 1)
  delay_ms        sleep first (asynchronously); with no status the request then proceeds normally
  drop_connection close the TCP connection without any response; inside a batch the whole $batch
                  connection is dropped after the steps before it have run
  in_batch        true: only batch steps; false: only top-level HTTP requests; absent: both
  after           run the request for real first, then answer with the fault (the change happened but the
                  client never learns it: the "did my create go through?" case)
  code, message   override the error body's code and message
"""
from __future__ import annotations

import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from m365_emulator.kernel.graph import GraphError
from m365_emulator.kernel.throttle import rate_limited

DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is invalid."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: ("ErrorItemNotFound", "The specified object was not found in the store."),
    409: ("ErrorIrresolvableConflict", "The send or update operation could not be performed because the change "
          "key passed in the request does not match the current change key for the item."),
    500: ("generalException", "General exception while processing."),
    502: ("BadGateway", "The server received an invalid response from an upstream server."),
    503: ("serviceNotAvailable", "The service is temporarily unavailable. Please retry later."),
    504: ("GatewayTimeout", "The operation timed out."),
}


@dataclass
class FaultRule:
    path_regex: str
    method: str | None = None
    status: int | None = None
    retry_after: float | None = None
    times: int | None = None
    probability: float = 1.0
    delay_ms: int = 0
    drop_connection: bool = False
    in_batch: bool | None = None
    after: bool = False
    code: str | None = None
    message: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    hits: int = 0

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.path_regex)

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "pattern"}

    def error(self) -> GraphError:
        assert self.status is not None
        headers = {"Retry-After": _seconds(self.retry_after)} if self.retry_after is not None else {}
        if self.status == 429 and self.code is None:
            err = rate_limited(int(self.retry_after or 1))
            err.headers = headers or err.headers
            return err
        code, message = DEFAULT_ERRORS.get(self.status, ("UnknownError", "An unknown error occurred."))
        return GraphError(self.status, self.code or code, self.message or message, headers)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []

    def add(self, spec: dict[str, Any]) -> FaultRule:
        known = set(FaultRule.__dataclass_fields__) - {"id", "hits"}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        rule = FaultRule(
            path_regex=_typed(spec, "path_regex", str) or ".*",
            method=_typed(spec, "method", str),
            status=_typed(spec, "status", int),
            retry_after=_typed(spec, "retry_after", float),
            times=_typed(spec, "times", int),
            probability=_typed(spec, "probability", float, 1.0),
            delay_ms=_typed(spec, "delay_ms", int, 0),
            drop_connection=_typed(spec, "drop_connection", bool, False),
            in_batch=_typed(spec, "in_batch", bool),
            after=_typed(spec, "after", bool, False),
            code=_typed(spec, "code", str),
            message=_typed(spec, "message", str),
        )
        if rule.status is None and not rule.drop_connection and not rule.delay_ms:
            raise ValueError("a fault needs a status, drop_connection or delay_ms")
        if rule.status is not None and not 400 <= rule.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if not 0 <= rule.probability <= 1:
            raise ValueError("probability must be between 0 and 1")
        if rule.delay_ms < 0 or (rule.times is not None and rule.times < 0):
            raise ValueError("delay_ms and times must not be negative")
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def match(self, method: str, target: str, in_batch: bool, after: bool) -> FaultRule | None:
        """The first rule that matches and fires (consuming one of its `times`)."""
        with self._lock:
            for rule in self.rules:
                if rule.after != after or (rule.times is not None and rule.times <= 0):
                    continue
                if rule.method not in (None, "*") and rule.method.upper() != method.upper():
                    continue
                if rule.in_batch is not None and rule.in_batch != in_batch:
                    continue
                if not rule.pattern.search(target):
                    continue
                if rule.probability < 1 and random.random() >= rule.probability:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                rule.hits += 1
                return rule
        return None


def _typed(spec: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = spec.get(name)
    if value is None:
        return default
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number")
        return kind(value)
    if not isinstance(value, kind):
        raise ValueError(f"{name} must be a {kind.__name__}")
    return value
