"""Thin Azure Functions Blueprints: parse a trigger, call sync_core, map errors to responses."""

from sync_core.logs import configure_logging

configure_logging()
