"""The parts of host.json the development host honours, with Azure's defaults where host.json is silent."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

# "hh:mm:ss", "hh:mm:ss.fff" or "d.hh:mm:ss": the .NET TimeSpan forms host.json uses.
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


class HostJsonError(ValueError):
    """host.json is unreadable or holds a value of the wrong shape; one line."""


# functionTimeout when host.json is silent: the Consumption plan's default (Premium and Dedicated use 30 min).
DEFAULT_FUNCTION_TIMEOUT = 300.0
# Overrides host.json's functionTimeout for this host only (tests use a few seconds): seconds, a TimeSpan or -1.
FUNCTION_TIMEOUT_SETTING = "DEVHOST_FUNCTION_TIMEOUT"
UNLIMITED = "-1"


def parse_timespan(text: str, where: str) -> float:
    """Seconds in a .NET TimeSpan string such as "00:00:30"."""
    match = _TIMESPAN.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise HostJsonError(f"host.json {where} must be a TimeSpan like \"00:00:30\", got {text!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    """extensions.queues: https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json"""

    max_dequeue_count: int = 5
    # Delay before a failed message becomes visible again (Azure's default is zero).
    visibility_timeout: float = 0.0
    batch_size: int = 16
    new_batch_threshold: int | None = None
    message_encoding: str = "base64"
    max_polling_interval: float | None = None

    @property
    def refill_threshold(self) -> int:
        """Fetch another batch when in-flight messages drop to this (Azure: batchSize / 2)."""
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return self.batch_size // 2


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    # Seconds one invocation may run; None is unlimited ("-1", which Azure allows on Premium/Dedicated plans).
    function_timeout: float | None = DEFAULT_FUNCTION_TIMEOUT


def parse_function_timeout(value: object, where: str = "functionTimeout") -> float | None:
    """host.json's functionTimeout: a TimeSpan ("00:10:00") or "-1" for unlimited; None means unlimited."""
    if not isinstance(value, str):
        raise HostJsonError(f"host.json {where} must be a string like \"00:05:00\" or \"-1\", got {value!r}")
    if value.strip() == UNLIMITED:
        return None
    seconds = parse_timespan(value, where)
    if seconds <= 0:
        raise HostJsonError(f"host.json {where} must be longer than zero (or \"-1\" for unlimited), got {value!r}")
    return seconds


def override_function_timeout(config: HostConfig, text: str) -> HostConfig:
    """The config with functionTimeout replaced by `text`: seconds ("2.5"), a TimeSpan, or "-1" for unlimited."""
    problem = f"{FUNCTION_TIMEOUT_SETTING} must be seconds above zero, a TimeSpan like \"00:00:30\" or -1, got {text!r}"
    try:
        seconds = float(text)
    except ValueError:
        try:
            return replace(config, function_timeout=parse_function_timeout(text))
        except HostJsonError:
            raise HostJsonError(problem) from None
    if seconds == -1:
        return replace(config, function_timeout=None)
    if not 0 < seconds < float("inf"):
        raise HostJsonError(problem)
    return replace(config, function_timeout=seconds)


def format_timespan(seconds: float) -> str:
    """"00:10:00" as the Functions host writes a TimeSpan in its logs."""
    whole, fraction = divmod(seconds, 1)
    hours, rest = divmod(int(whole), 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + f"{fraction:.3f}"[1:] if fraction else text


def _int(section: dict[str, object], key: str, default: int, low: int, high: int) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise HostJsonError(f"host.json extensions.queues.{key} must be a whole number {low}-{high}, got {value!r}")
    return value


def _queue_options(section: dict[str, object]) -> QueueOptions:
    encoding = str(section.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostJsonError(f"host.json extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
    threshold = section.get("newBatchThreshold")
    max_poll = section.get("maxPollingInterval")
    return QueueOptions(
        max_dequeue_count=_int(section, "maxDequeueCount", 5, 1, 1000),
        visibility_timeout=parse_timespan(str(section.get("visibilityTimeout", "00:00:00")),
                                          "extensions.queues.visibilityTimeout"),
        batch_size=_int(section, "batchSize", 16, 1, 32),
        new_batch_threshold=None if threshold is None else _int(section, "newBatchThreshold", 0, 0, 1000),
        message_encoding=encoding,
        max_polling_interval=None if max_poll is None else _polling_interval(max_poll),
    )


def _polling_interval(value: object) -> float:
    # Azure accepts a TimeSpan or a number of milliseconds.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000.0
    return parse_timespan(str(value), "extensions.queues.maxPollingInterval")


def load_host_json(path: Path | None) -> HostConfig:
    """Read host.json; a missing file means Azure's defaults."""
    if path is None or not path.is_file():
        return HostConfig()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HostJsonError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise HostJsonError(f"{path} must hold a JSON object")
    extensions = document.get("extensions") or {}
    http = extensions.get("http") or {}
    queues = extensions.get("queues") or {}
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise HostJsonError(f"host.json extensions.http.routePrefix must be a string, got {prefix!r}")
    timeout = document.get("functionTimeout")
    return HostConfig(route_prefix=prefix.strip("/"), queues=_queue_options(queues),
                      function_timeout=DEFAULT_FUNCTION_TIMEOUT if timeout is None else parse_function_timeout(timeout))
