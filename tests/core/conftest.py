"""Fixtures of the core tests: a fresh fake world per test and a way to forbid writes."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from core_world import World


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def no_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Call with a world: every writer of CRM records, Outlook items and links then fails the test."""

    def forbid(target: World) -> None:
        def fail(name: str) -> Any:
            def writer(*args: Any, **kwargs: Any) -> Any:
                pytest.fail(f"{name} called by a sync that should write nothing")
            return writer

        for name in ("create_contacts", "update_contacts", "delete_contacts", "delete_folder"):
            monkeypatch.setattr(target.ms, name, fail(f"Outlook.{name}"))
        for name in ("create_contact", "update_contact", "delete_contact", "create_account"):
            monkeypatch.setattr(target.crm, name, fail(f"CRM.{name}"))
        for name in ("save_link", "delete_link", "put_quarantine"):
            monkeypatch.setattr(target.state, name, fail(f"state.{name}"))

    yield forbid
