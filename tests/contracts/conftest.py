"""Each port's contract suite runs against the in-memory adapter and the real one.

The Table adapters get their own table names per test (the `app_env` storage prefix) on the session's
Azurite; the Graph adapters talk over HTTP to the session's Microsoft 365 emulator, each test in a mailbox
of its own. Azurite and the emulator start only when a case that needs them actually runs.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync_core.adapters.memory import MemoryCrm, MemoryStateStore
from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.tables.state import TableStateStore
from sync_core.ports import CrmPort, StateStore
from sync_core.settings import load_settings
from tests.contracts.mailboxes import Mailbox, graph_mailbox, memory_mailbox
from tests.fixtures_emulator import emulator, emulator_control, emulator_user  # noqa: F401


@pytest.fixture(params=["memory", "tables"])
def crm(request: pytest.FixtureRequest) -> CrmPort:
    if request.param == "memory":
        return MemoryCrm()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableCrm.from_settings(settings)


@pytest.fixture(params=["memory", "tables"])
def store(request: pytest.FixtureRequest) -> StateStore:
    if request.param == "memory":
        return MemoryStateStore()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableStateStore.from_settings(settings)


@pytest.fixture(params=["memory", "graph"])
def mailbox(request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    if request.param == "memory":
        found = memory_mailbox()
    else:
        found = graph_mailbox(request.getfixturevalue("emulator").graph, request.getfixturevalue("emulator_control"),
                              request.getfixturevalue("emulator_user"))
    yield found
    found.close()
