"""Structured logs: one JSON line per event (user, run id, action, outcome), ids only, no secrets.

Callers log with `extra={"event": ..., "user": ..., "run_id": ..., ...}`; the formatter keeps those
keys and masks again anything shaped like a token or a registered secret (sync_core.redaction cleans
every record for every handler first).
"""
from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from sync_core.redaction import install, redact, register_secret, watch_environment
from sync_core.settings import secret_setting_names

__all__ = ["JsonFormatter", "configure_logging", "install_redaction", "redact", "register_secret"]

# Attributes every LogRecord has: what is left over came from `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def install_redaction() -> None:
    """Masks secrets in every record before any handler gets it (see sync_core.redaction); idempotent.
    Called when function_app is imported, so handlers the Functions host adds later are covered."""
    watch_environment(*secret_setting_names())
    install()


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


def configure_logging(level: int = logging.INFO, stream: Any = None) -> None:
    """JSON lines for sync_core's loggers, secrets masked for every handler; idempotent."""
    install_redaction()
    root = logging.getLogger("sync_core")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = True
