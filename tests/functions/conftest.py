"""Fixtures of the function tests: the app stack (tests/functions/stack.py) and the emulator."""
from __future__ import annotations

from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401
from tests.functions.stack import log_collector, ms_user, stack, web  # noqa: F401
