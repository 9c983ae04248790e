"""The Microsoft 365 emulator as pytest fixtures, for any test directory.

Use from a conftest.py:  `from tests.fixtures_emulator import emulator, emulator_control, emulator_user  # noqa: F401`
(or once for the whole suite in tests/conftest.py: `pytest_plugins = ("tests.fixtures_emulator",)`).

- `emulator` (session): one `EmulatorProcess` (Graph + control over HTTP, identity over HTTPS when present);
  `.graph`, `.control`, `.authority`, `.ca_file`, `.tenant_id`.
- `emulator_control` (session): its control API client (`ControlClient`).
- `emulator_user` (per test): a fresh mailbox and a Graph access token: {"id", "userPrincipalName", "password",
  "token"}. Tests share one emulator, so they create their own users rather than resetting it.

However many conftests import these fixtures, the session starts one emulator process (module-level cache) and
stops it, by PID, when the session ends.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from m365_emulator.server import ControlClient, EmulatorProcess

_shared: dict[str, Any] = {}


def _shared_emulator(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> EmulatorProcess:
    found = _shared.get("process")
    if found is None:
        found = EmulatorProcess(workdir=tmp_path_factory.mktemp("m365-emulator")).start()
        _shared["process"] = found

        def stop() -> None:
            _shared.pop("process", None)
            client = _shared.pop("control", None)
            if client is not None:
                client.close()
            found.stop()
        config.add_cleanup(stop)
    return found


@pytest.fixture(scope="session")
def emulator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EmulatorProcess:
    return _shared_emulator(request.config, tmp_path_factory)


@pytest.fixture(scope="session")
def emulator_control(emulator: EmulatorProcess) -> ControlClient:
    client = _shared.get("control")
    if client is None:
        client = _shared["control"] = emulator.control_client()
    return client


@pytest.fixture
def emulator_user(emulator_control: ControlClient) -> Iterator[dict[str, Any]]:
    user, token = emulator_control.new_user_with_token()
    yield {**user, "token": token}
