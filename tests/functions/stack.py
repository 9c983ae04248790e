"""The whole app as users meet it, once per test session (the launcher itself is devhost/stack.py, shared
with bench/): Azurite, the Microsoft 365 emulator, an app registration in the emulator, and `python -m
devhost` serving function_app.app over real HTTP as a subprocess stopped by PID.

Shared by tests/functions and tests/browser (import the fixtures into a conftest). Tests isolate
themselves by tenant: each creates its own CRM tenant and user ids and its own emulator mailbox.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from devhost.azurite import Azurite
from devhost.stack import (
    ROOT,
    LogCollector,
    Stack,
    WebClient,
    clean_environ,
    client_sign_in,
    connect_with_emulator,
    start_stack,
    started_sign_ins,
    wait_for,
    wait_subscribed,
)
from m365_emulator.server import ControlClient, EmulatorProcess

__all__ = ["ROOT", "LogCollector", "Stack", "WebClient", "clean_environ", "client_sign_in", "connect_with_emulator",
           "start_stack", "started_sign_ins", "wait_for", "wait_subscribed", "log_collector", "stack", "web",
           "ms_user"]


# -- fixtures ----------------------------------------------------------------------------------------

_shared: dict[str, Any] = {}


@pytest.fixture(scope="session")
def log_collector() -> Iterator[LogCollector]:
    collector = _shared.get("collector")
    if collector is None:
        collector = _shared["collector"] = LogCollector()
        root = logging.getLogger()
        root.addHandler(collector)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        # The test harness's own HTTP clients (they print the launch links tests send) and the storage SDK's
        # request dumps are not the app's logs; the app's own loggers stay at INFO.
        for noisy in ("httpx", "httpcore", "azure"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    yield collector


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, azurite: Azurite, emulator: EmulatorProcess,
          emulator_control: ControlClient, log_collector: LogCollector,
          tmp_path_factory: pytest.TempPathFactory) -> Stack:
    found = _shared.get("stack")
    if found is None:
        found, stopper = start_stack(azurite, emulator, emulator_control, tmp_path_factory.mktemp("app-stack"),
                                     log_collector)
        _shared["stack"] = found
        request.config.add_cleanup(stopper)
    return found  # type: ignore[no-any-return]


@pytest.fixture
def web(stack: Stack) -> Iterator[WebClient]:
    client = stack.browser()
    yield client
    client.close()


@pytest.fixture
def ms_user(emulator_control: ControlClient) -> dict[str, Any]:
    return emulator_control.create_user()
