"""Fixtures of the fault matrix: one whole system per session (bench.chaos_stack: persistent Azurite that can be
stopped and restarted, a development host that can be SIGKILLed, the session's emulator) with a short sync
lease and queue visibility timeout, so recovery happens within a test. Each test connects its own user through
the real OAuth flow and its own mailbox; Graph faults are emulator rules, cleared after every test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos_stack import ChaosStack, start_chaos_stack
from m365_emulator.server import ControlClient, EmulatorProcess
from tests.faults.matrix import GRAPH_TIMEOUT, LEASE_SECONDS, Connector
from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401

HOST_JSON = Path(__file__).with_name("host.json")


@pytest.fixture(scope="session")
def faults_stack(request: pytest.FixtureRequest, emulator: EmulatorProcess,  # noqa: F811
                 emulator_control: ControlClient,  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> ChaosStack:
    stack = start_chaos_stack(tmp_path_factory.mktemp("faults-stack"), emulator=emulator, control=emulator_control,
                              lease_seconds=LEASE_SECONDS, graph_timeout=GRAPH_TIMEOUT, host_json=HOST_JSON)
    request.config.add_cleanup(stack.close)
    return stack


@pytest.fixture
def connect(faults_stack: ChaosStack) -> Iterator[Connector]:
    connector = Connector(faults_stack)
    try:
        yield connector
    finally:
        connector.close()
