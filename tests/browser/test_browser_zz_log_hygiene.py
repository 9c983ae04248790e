"""Runs last in this directory: no token or secret appears in any log line captured so far."""
from __future__ import annotations

import pytest

from tests.functions.log_hygiene import leaked_secrets
from tests.functions.stack import Stack

pytestmark = pytest.mark.browser


def test_no_secret_appears_in_any_log_line(stack: Stack) -> None:
    assert stack.devhost_lines(), "the devhost log is empty: nothing was captured"
    assert leaked_secrets(stack) == []
