"""Each port's contract suite runs against the in-memory fake and the Table Storage adapter.

The Table adapters get their own table names per test (the `app_env` storage prefix) on the
session's Azurite; Azurite starts only when a Table-backed case actually runs.
"""
from __future__ import annotations

import importlib
from typing import Any

import pytest

from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.tables.state import TableStateStore
from sync_core.ports import CrmPort, StateStore
from sync_core.settings import load_settings


def _fake(class_name: str) -> Any:
    try:
        module = importlib.import_module("sync_core.fakes")
    except ImportError as exc:
        pytest.skip(f"sync_core.fakes is not available yet ({exc}); the fake's contract run is pending")
    fake_class = getattr(module, class_name, None)
    if fake_class is None:
        pytest.skip(f"sync_core.fakes has no {class_name} yet; the fake's contract run is pending")
    return fake_class()


@pytest.fixture(params=["fake", "tables"])
def crm(request: pytest.FixtureRequest) -> CrmPort:
    if request.param == "fake":
        return _fake("FakeCrm")  # type: ignore[no-any-return]
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableCrm.from_settings(settings)


@pytest.fixture(params=["fake", "tables"])
def store(request: pytest.FixtureRequest) -> StateStore:
    if request.param == "fake":
        return _fake("FakeStateStore")  # type: ignore[no-any-return]
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableStateStore.from_settings(settings)
