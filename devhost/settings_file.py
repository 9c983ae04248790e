"""local.settings.json (the Core Tools format) and `%SETTING%` references in binding metadata.

    {"IsEncrypted": false, "Values": {"NAME": "value", ...}, "Host": {"LocalHttpPort": 7071}}

Values become environment variables before the app is imported, as Core Tools does; variables already in the
environment win, so a shell export or a test can override the file.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

_REFERENCE = re.compile(r"%([^%]+)%")


class SettingsFileError(ValueError):
    """local.settings.json is unreadable or malformed, or a %SETTING% reference is unset; one line."""


@dataclass(frozen=True)
class LocalSettings:
    values: dict[str, str] = field(default_factory=dict)
    local_http_port: int | None = None


def _as_text(name: str, value: object, path: Path) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise SettingsFileError(f"{path}: Values.{name} must be a string, got {type(value).__name__}")


def load_local_settings(path: Path) -> LocalSettings:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsFileError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SettingsFileError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SettingsFileError(f"{path} must hold a JSON object with a Values object")
    if document.get("IsEncrypted") is True:
        raise SettingsFileError(f"{path} is encrypted; the development host reads only plain local settings")
    raw_values = document.get("Values") or {}
    if not isinstance(raw_values, dict):
        raise SettingsFileError(f"{path}: Values must be an object of name: string")
    values = {str(name): _as_text(str(name), value, path) for name, value in raw_values.items()}
    host = document.get("Host") or {}
    port = host.get("LocalHttpPort") if isinstance(host, dict) else None
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535):
        raise SettingsFileError(f"{path}: Host.LocalHttpPort must be a port number, got {port!r}")
    return LocalSettings(values=values, local_http_port=port)


def apply_to_environ(values: Mapping[str, str], environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set each value not already present; return the names that were set."""
    target = os.environ if environ is None else environ
    applied = [name for name in values if name not in target]
    for name in applied:
        target[name] = values[name]
    return applied


def resolve_references(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace each `%NAME%` with that app setting, as the Functions host does for binding properties."""
    source = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in source:
            raise SettingsFileError(f"app setting {name} (referenced as %{name}%) is not set")
        return source[name]

    return _REFERENCE.sub(lookup, text)
