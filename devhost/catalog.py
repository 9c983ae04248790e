"""What the app declares, read only from its own metadata: `app.get_functions()` and each function's bindings.

A function whose metadata devhost cannot honour (unknown trigger, unsupported binding, bad schedule, unset
%SETTING%) is reported "in error" and left out, as the Functions host does; the other functions still run.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devhost.invocation import Invoker
from devhost.ncrontab import CronError, CronSchedule
from devhost.routing import RouteError, RouteTemplate
from devhost.settings_file import SettingsFileError, resolve_references

DEFAULT_CONNECTION = "AzureWebJobsStorage"


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # anonymous | function | admin
    invoker: Invoker


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: CronSchedule
    run_on_startup: bool
    invoker: Invoker


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue_name: str
    connection_string: str
    invoker: Invoker


@dataclass
class Catalog:
    http: list[HttpFunction] = field(default_factory=list)
    timers: list[TimerFunction] = field(default_factory=list)
    queues: list[QueueFunction] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # function name -> why it is not served


def _text(value: Any) -> str:
    """Enum members of azure.functions (AuthLevel.FUNCTION, HttpMethod.GET) carry their text in .value."""
    return str(getattr(value, "value", value))


def _connection_string(setting_name: str, environ: Mapping[str, str]) -> str:
    name = setting_name or DEFAULT_CONNECTION
    # The Functions host also accepts the name with an "AzureWebJobs" prefix.
    for candidate in (name, f"AzureWebJobs{name}"):
        if environ.get(candidate):
            return environ[candidate]
    raise ValueError(f"connection setting {name} is not set")


def _http(name: str, trigger: dict[str, Any], invoker: Invoker, default_auth: str) -> HttpFunction:
    methods = trigger.get("methods")
    level = _text(trigger.get("authLevel") or default_auth).lower()
    if level not in ("anonymous", "function", "admin"):
        raise ValueError(f"auth level {level!r} is not anonymous, function or admin")
    return HttpFunction(
        name=name,
        route=RouteTemplate.parse(str(trigger.get("route") or name)),
        methods=frozenset(_text(m).upper() for m in methods) if methods else None,
        auth_level=level,
        invoker=invoker,
    )


def _timer(name: str, trigger: dict[str, Any], invoker: Invoker, environ: Mapping[str, str]) -> TimerFunction:
    expression = resolve_references(str(trigger.get("schedule") or ""), environ)
    return TimerFunction(name, CronSchedule.parse(expression), bool(trigger.get("runOnStartup")), invoker)


def _queue(name: str, trigger: dict[str, Any], invoker: Invoker, environ: Mapping[str, str]) -> QueueFunction:
    queue_name = resolve_references(str(trigger.get("queueName") or ""), environ).lower()
    if not queue_name:
        raise ValueError("the queue trigger has no queue name")
    connection = _connection_string(str(trigger.get("connection") or ""), environ)
    return QueueFunction(name, queue_name, connection, invoker)


def load_catalog(app: Any, environ: Mapping[str, str] | None = None) -> Catalog:
    """Read every function of `app` (calls app.get_functions() once, as the library asks)."""
    env = os.environ if environ is None else environ
    default_auth = _text(getattr(app, "auth_level", "function"))
    catalog = Catalog()
    for function in app.get_functions():
        name = function.get_function_name()
        bindings = [dict(b) for b in function.get_bindings_dict()["bindings"]]
        triggers = [b for b in bindings if _text(b.get("type", "")).endswith("Trigger")]
        try:
            if len(triggers) != 1:
                raise ValueError(f"it has {len(triggers)} trigger bindings; exactly one is needed")
            trigger = triggers[0]
            kind = _text(trigger["type"])
            # Only an HTTP trigger's own `$return` output is understood; any other binding would be ignored
            # silently, so the function is refused instead.
            unsupported = sorted(
                _text(b.get("type")) for b in bindings
                if b is not trigger and not (kind == "httpTrigger" and _text(b.get("type")) == "http")
            )
            if unsupported:
                raise ValueError(f"devhost does not support its {', '.join(unsupported)} binding(s)")
            invoker = Invoker.build(name, str(trigger["name"]), function.get_user_function())
            if kind == "httpTrigger":
                catalog.http.append(_http(name, trigger, invoker, default_auth))
            elif kind == "timerTrigger":
                catalog.timers.append(_timer(name, trigger, invoker, env))
            elif kind == "queueTrigger":
                catalog.queues.append(_queue(name, trigger, invoker, env))
            else:
                raise ValueError(f"devhost does not run {kind} functions")
        except (ValueError, CronError, RouteError, SettingsFileError) as exc:
            catalog.errors[name] = str(exc)
    return catalog
