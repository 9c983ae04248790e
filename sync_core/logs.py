"""Structured logs: one JSON line per event (user, run id, action, outcome), ids only, no secrets.

Callers log with `extra={"event": ..., "user": ..., "run_id": ..., ...}`; the formatter keeps those
keys, and a last-line-of-defence filter masks anything shaped like a token or a configured secret.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has: what is left over came from `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
_TOKEN_PATTERNS = [
    re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}(\.[A-Za-z0-9_\-]*)?"),  # JWTs
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-~+/=]{8,}"),
    re.compile(r"(?i)((?:access|refresh|id)_token|client_secret|code|password|clientState|sig)(\"?\s*[:=]\s*\"?)[^\s\"&,;]{6,}"),
]
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Values that must never appear in a log line (client secret, keys), masked if they do."""
    if value and len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    text = _TOKEN_PATTERNS[0].sub("***", text)
    text = _TOKEN_PATTERNS[1].sub(r"\1***", text)
    return _TOKEN_PATTERNS[2].sub(r"\1\2***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            payload["error"] = f"{record.exc_info[0].__name__ if record.exc_info[0] else 'Error'}"
        return redact(json.dumps(payload, ensure_ascii=False, default=str))


class RedactingFilter(logging.Filter):
    """For handlers we don't format ourselves (the Functions host's): mask secrets in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: int = logging.INFO, stream: Any = None) -> None:
    """JSON lines for sync_core's loggers; idempotent."""
    root = logging.getLogger("sync_core")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = True
    for name in ("azure", "msal", "httpx", "kiota_http"):
        logging.getLogger(name).addFilter(RedactingFilter())
