"""Session-wide services for the suite: Azurite on free ports (in memory), stopped by PID.

Each test gets its own storage prefix, so tables and queues never bleed between tests.
"""
from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.azurite import Azurite

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    server = Azurite(log_path=log).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def storage_prefix() -> str:
    """A fresh lowercase prefix per test: tables and queues of one test never meet another's."""
    return "t" + secrets.token_hex(4)


@pytest.fixture
def app_env(azurite: Azurite, storage_prefix: str) -> dict[str, str]:
    """A complete, valid set of app settings pointing at the session's Azurite."""
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
        "IDENTITY_AUTHORITY": "https://127.0.0.1:9/common",
        "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
        "GRAPH_CLIENT_SECRET": "test-secret-" + secrets.token_hex(8),
        "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PUBLIC_BASE_URL": "http://127.0.0.1:7071",
        "CRM_LAUNCH_SECRET": secrets.token_hex(32),
        "STORAGE_PREFIX": storage_prefix,
        "SYNC_QUEUE_NAME": f"{storage_prefix}-sync-jobs",
    }
