"""A FunctionApp module whose import fails the way function_app.py does when a setting is missing."""
from __future__ import annotations

import azure.functions as func

from sync_core.settings import load_settings

settings = load_settings({})  # raises sync_core.domain.errors.SettingsError: one line naming the setting

app = func.FunctionApp()
