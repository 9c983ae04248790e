"""Fixtures of the devhost tests: the sample app served by one devhost subprocess for the session."""
from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from devhost_harness import SAMPLE_HOST_JSON, SampleHost, clean_environ, start_devhost

from devhost.azurite import Azurite


@pytest.fixture(scope="session")
def sample_host(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleHost]:
    """The sample app on a devhost; some settings come from local.settings.json, some from the environment."""
    queue = "s" + secrets.token_hex(4) + "-work"
    function_key, master_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    settings = {
        "IsEncrypted": False,
        "Values": {
            "SAMPLE_TICK_SCHEDULE": "*/2 * * * * *",
            "SAMPLE_QUEUE": queue,
            "SAMPLE_STORAGE": azurite.connection_string,
            # The environment's value must win over this one.
            "DEVHOST_FUNCTION_KEY": "key-from-file-loses",
        },
    }
    env = clean_environ(DEVHOST_FUNCTION_KEY=function_key, DEVHOST_MASTER_KEY=master_key)
    host = start_devhost(tmp_path_factory.mktemp("sample-host"), env, settings=settings,
                         host_json=SAMPLE_HOST_JSON, events=True)
    try:
        yield SampleHost(host, queue, azurite.connection_string, function_key, master_key)
    finally:
        code = host.terminate()
        assert code == 0, host.log()
