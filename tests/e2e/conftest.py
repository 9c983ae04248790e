from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.harness import ContactRig, make_rig
from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401


@pytest.fixture
def rig(azurite: Azurite, emulator: EmulatorProcess, emulator_control: ControlClient,  # noqa: F811
        storage_prefix: str) -> Iterator[ContactRig]:
    yield make_rig(azurite.connection_string, storage_prefix, emulator.graph, emulator_control)
