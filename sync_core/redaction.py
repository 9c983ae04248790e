"""Secrets are masked in every log record before any handler sees it, whoever logged it.

Formatters and filters on our own loggers only protect our own handlers; in Azure the platform adds
its own (Application Insights) to the root logger, after our module is imported, and the Azure SDK,
MSAL, httpx or urllib3 log through loggers we never configured. So `install()` hooks the two places
every record passes on its way to a handler — `Logger.callHandlers` (any logger, any handler, including
ones added later and `logging.lastResort`) and `Handler.handle` (records handed to a handler directly,
e.g. by a QueueListener) — and cleans the record in place: message and args, `extra` attributes,
stack_info, exc_text, and exc_info, whose exception is replaced by a stand-in with masked text, because
handlers format the exception themselves (traceback.format_exception, str(exc)).

The secrets are looked up when a record is cleaned, never copied at install: the secret app settings
are read from the environment each time, and tokens obtained at run time are registered as they come.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MASK = "***"
# Opaque tokens (refresh tokens, MSA access tokens) have no recognisable shape: the app registers them
# as it obtains them. Bounded, because a long-lived worker refreshes tokens for many users; the oldest
# (long expired) are forgotten first.
RUNTIME_SECRETS_MAX = 1024
_MIN_SECRET = 6

_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}(\.[A-Za-z0-9_\-]*)?")
# The whole value of an Authorization header (Bearer, Basic, SharedKey ...), as a line, JSON or a repr.
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)[^\"'\r\n,}]+")
_BEARER = re.compile(r"(?i)(bearer\s+)(?!\*\*\*)[A-Za-z0-9._\-~+/=]{8,}")
_KEY_VALUE = re.compile(
    r"(?i)((?:access|refresh|id)_token|client_secret|client_assertion|code|password|clientState|sig"
    r"|AccountKey|SharedAccessKey|SharedAccessSignature)([\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;]{6,}"
)
# Attributes every LogRecord has and that never carry caller data.
_PLAIN = {"name", "levelname", "levelno", "pathname", "filename", "module", "lineno", "funcName",
          "created", "msecs", "relativeCreated", "thread", "threadName", "processName", "process",
          "taskName", "msg", "args", "exc_info", "exc_text", "stack_info"}
_MARK = "_redacted_at"


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._static: frozenset[str] = frozenset()
        self._runtime: OrderedDict[str, None] = OrderedDict()
        self._snapshot: tuple[str, ...] = ()
        self.generation = 0
        self.env_names: tuple[str, ...] = ()

    def add(self, value: str, runtime: bool) -> None:
        with self._lock:
            if value in self._static or value in self._runtime:
                if runtime:
                    self._runtime.move_to_end(value)
                return
            if runtime:
                self._runtime[value] = None
                while len(self._runtime) > RUNTIME_SECRETS_MAX:
                    self._runtime.popitem(last=False)
            else:
                self._static = self._static | {value}
            # Longest first: a secret that contains another is masked whole.
            self._snapshot = tuple(sorted(self._static | set(self._runtime), key=len, reverse=True))
            self.generation += 1

    def current(self) -> tuple[str, ...]:
        from_env = tuple(v for v in (os.environ.get(name) for name in self.env_names) if v and len(v) >= _MIN_SECRET)
        return from_env + self._snapshot


_registry = _Registry()


def register_secret(value: str | None, *, runtime: bool = False) -> None:
    """A value that must never appear in a log line. `runtime=True` for tokens obtained while running
    (kept among the most recent RUNTIME_SECRETS_MAX); otherwise kept for the life of the process."""
    if value and len(value) >= _MIN_SECRET:
        _registry.add(value, runtime)


def watch_environment(*names: str) -> None:
    """Environment variables whose current values are secrets (the secret app settings)."""
    _registry.env_names = tuple(dict.fromkeys(_registry.env_names + names))


def redact(text: str) -> str:
    for secret in _registry.current():
        if secret in text:
            text = text.replace(secret, MASK)
    text = _JWT.sub(MASK, text)
    text = _AUTH_HEADER.sub(r"\1" + MASK, text)
    text = _BEARER.sub(r"\1" + MASK, text)
    return _KEY_VALUE.sub(r"\1\2" + MASK, text)


def _leaks(value: object) -> bool:
    text = value if isinstance(value, str) else str(value)
    return redact(text) != text


_stand_in_classes: dict[type[BaseException], type[Exception]] = {}  # one per exception class, few


def _stand_in_class(original: type[BaseException]) -> type[Exception]:
    """An exception class that prints like `original` (same name and module) in a traceback."""
    if original not in _stand_in_classes:
        _stand_in_classes[original] = type(original.__name__, (Exception,), {
            "__module__": original.__module__, "__qualname__": original.__qualname__})
    return _stand_in_classes[original]


def _stand_in(exc: BaseException, memo: dict[int, BaseException]) -> BaseException:
    """A copy of the exception chain with masked messages and notes, keeping the tracebacks."""
    if id(exc) in memo:
        return memo[id(exc)]
    if isinstance(exc, BaseExceptionGroup):
        # Sub-exceptions cannot be copied faithfully: carry their masked rendering in the message.
        text = redact("".join(traceback.format_exception(exc)))
    else:
        text = redact(_safe_str(exc))
    twin = _stand_in_class(type(exc))(text).with_traceback(exc.__traceback__)
    memo[id(exc)] = twin
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        twin.__notes__ = [redact(str(note)) for note in notes]
    if exc.__cause__ is not None:
        twin.__cause__ = _stand_in(exc.__cause__, memo)
    if exc.__context__ is not None:
        twin.__context__ = _stand_in(exc.__context__, memo)
    twin.__suppress_context__ = exc.__suppress_context__
    return twin


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as failure:  # an exception whose __str__ fails still gets logged, by type
        return f"<{type(exc).__name__}: str() failed with {type(failure).__name__}>"


def _clean_exc_info(record: logging.LogRecord) -> None:
    exc_info = record.exc_info
    if not exc_info or not isinstance(exc_info, tuple) or exc_info[1] is None:
        return
    if not _leaks("".join(traceback.format_exception(exc_info[1]))):
        return
    twin = _stand_in(exc_info[1], {})
    record.exc_info = (type(twin), twin, exc_info[2])


def _clean_message(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed %-format: handleError will print msg and args, so mask both
        record.msg = redact(str(record.msg))
        if record.args:
            args = record.args.values() if isinstance(record.args, dict) else record.args
            record.args = tuple(redact(str(arg)) for arg in args)
        return
    args = record.args.values() if isinstance(record.args, dict) else (record.args or ())
    if _leaks(message) or any(not isinstance(a, (int, float, bool, type(None))) and _leaks(a) for a in args):
        record.msg, record.args = redact(message), None


def redact_record(record: logging.LogRecord) -> None:
    """Masks every secret the record carries, in place; once per record unless secrets were added."""
    if getattr(record, _MARK, None) == _registry.generation:
        return
    try:
        _clean_message(record)
        for key, value in list(record.__dict__.items()):
            if key in _PLAIN or key == _MARK or isinstance(value, (int, float, bool, type(None))):
                continue
            if _leaks(value):
                record.__dict__[key] = redact(value if isinstance(value, str) else str(value))
        for key in ("exc_text", "stack_info"):
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, redact(value))
        _clean_exc_info(record)
    except Exception as failure:
        # Fail closed: a record we could not clean is not shown.
        record.msg, record.args = f"[log record withheld: redaction failed with {type(failure).__name__}]", None
        record.exc_info = record.exc_text = record.stack_info = None
    setattr(record, _MARK, _registry.generation)


_originals: dict[str, Callable[..., Any]] = {}


def install() -> None:
    """Cleans every record on its way to any handler, for the life of the process; idempotent."""
    if _originals:
        return
    call_handlers = logging.Logger.callHandlers
    handle = logging.Handler.handle
    _originals.update(callHandlers=call_handlers, handle=handle)

    def redacting_call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        redact_record(record)
        call_handlers(self, record)

    def redacting_handle(self: logging.Handler, record: logging.LogRecord) -> Any:
        redact_record(record)
        return handle(self, record)

    logging.Logger.callHandlers = redacting_call_handlers  # type: ignore[method-assign]
    logging.Handler.handle = redacting_handle  # type: ignore[method-assign]
