"""Fixtures of the task tests: a fresh fake world, a way to forbid writes, and (for end-to-end tests) the
session's Azurite and emulator."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from task_world import TaskWorld

from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401


@pytest.fixture
def world() -> TaskWorld:
    return TaskWorld()


@pytest.fixture
def no_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Call with a world: every writer of CRM tasks, Microsoft items and links then fails the test."""

    def forbid(target: TaskWorld) -> None:
        def fail(name: str) -> Any:
            def writer(*args: Any, **kwargs: Any) -> Any:
                pytest.fail(f"{name} called by a sync that should write nothing")
            return writer

        for name in ("create_tasks", "update_tasks", "delete_tasks"):
            monkeypatch.setattr(target.ms, name, fail(f"Microsoft.{name}"))
        for name in ("create_task", "update_task", "delete_task", "create_account"):
            monkeypatch.setattr(target.crm, name, fail(f"CRM.{name}"))
        for name in ("save_link", "delete_link", "put_quarantine"):
            monkeypatch.setattr(target.state, name, fail(f"state.{name}"))

    yield forbid
