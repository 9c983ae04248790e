"""Thin Azure Functions Blueprints: parse a trigger, call sync_core, map errors to responses."""
