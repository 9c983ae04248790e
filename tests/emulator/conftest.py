"""Fixtures for the emulator's own tests: the shared emulator process, the unmodified msgraph-sdk pointed at it
(warmed once per session), an event loop for the SDK's async calls, and a raw-HTTP Graph client for what the SDK
does not expose."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import httpx
import pytest

from m365_emulator.server import ControlClient, EmulatorProcess
from tests.fixtures_emulator import emulator, emulator_control, emulator_user  # noqa: F401

T = TypeVar("T")
IMMUTABLE = 'IdType="ImmutableId"'


@pytest.fixture(scope="session")
def aio() -> Iterator[Callable[[Coroutine[Any, Any, T]], T]]:
    """Run a coroutine on one loop for the whole session (the SDK's httpx client stays bound to it)."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


class StaticCredential:
    """An azure.core TokenCredential that hands out a token obtained from the control API."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="session")
def make_sdk(emulator: EmulatorProcess, aio: Callable[..., Any]) -> Callable[[str], Any]:  # noqa: F811
    """`make_sdk(token)` → GraphServiceClient on the emulator. msgraph is imported and a model deserialised once
    here, so its ~1,200 modules load once per session."""
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.contact import Contact

    def make(token: str) -> Any:
        auth = AzureIdentityAuthenticationProvider(StaticCredential(token), scopes=["https://graph.microsoft.com/.default"])
        adapter = GraphRequestAdapter(auth)
        adapter.base_url = emulator.graph
        return GraphServiceClient(request_adapter=adapter)

    Contact(given_name="warm")  # touch the model tree once
    return make


@dataclass
class GraphHttp:
    """Raw Graph calls with httpx, for what the SDK hides (status codes, headers, batch bodies)."""

    base: str
    token: str
    http: httpx.Client

    def request(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None,
                params: dict[str, str] | None = None, token: str | None = None) -> httpx.Response:
        url = path if path.startswith("http") else self.base + path
        all_headers = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        return self.http.request(method, url, json=json, headers=all_headers, params=params)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, json=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, json: Any = None, status: int = 200, **kw: Any) -> Any:
        response = self.request(method, path, json=json, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


@pytest.fixture(scope="session")
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, trust_env=False) as client:
        yield client


@pytest.fixture
def graph(emulator: EmulatorProcess, emulator_user: dict[str, Any], http_client: httpx.Client) -> GraphHttp:  # noqa: F811
    return GraphHttp(emulator.graph, emulator_user["token"], http_client)


@pytest.fixture
def control(emulator_control: ControlClient) -> ControlClient:  # noqa: F811
    return emulator_control


@dataclass
class Isolated:
    """A second emulator, private to these tests, for what changes global state (clock, reset, throttling
    settings, faults): the shared one also serves the rest of the suite."""

    process: EmulatorProcess
    control: ControlClient
    http: httpx.Client

    def graph(self, token: str | None = None) -> GraphHttp:
        if token is None:
            token = self.control.new_user_with_token()[1]
        return GraphHttp(self.process.graph, token, self.http)


@pytest.fixture(scope="session")
def isolated_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(workdir=tmp_path_factory.mktemp("isolated-emulator"))
    with process:
        yield process


@pytest.fixture
def isolated(isolated_process: EmulatorProcess, http_client: httpx.Client) -> Iterator[Isolated]:
    client = isolated_process.control_client()
    try:
        yield Isolated(isolated_process, client, http_client)
    finally:
        client.clear_faults()
        client.throttle(limit=10_000, window_seconds=600, max_concurrency=4, service_delay_ms=0)
        client.close()


def new_folder(graph: GraphHttp, name: str = "CRM") -> str:
    return str(graph.ok("POST", "/me/contactFolders", {"displayName": name}, status=201)["id"])
