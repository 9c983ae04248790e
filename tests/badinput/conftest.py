"""Fixtures of the bad-input tests: a real sync rig (Table Storage on Azurite, msgraph-sdk on the emulator over
HTTP) per test module, with the task sync too, and the person in Outlook on the other side."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.chaos_people import GraphPerson
from bench.harness import ContactRig, make_rig
from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.adapters.graph.contacts import GraphContacts
from sync_core.adapters.graph.tasks import GraphTasks
from sync_core.domain.models import RunRecord, UserSyncSettings
from sync_core.sync.user import sync_user
from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401


@dataclass
class Rig:
    base: ContactRig
    outlook: GraphPerson
    account_id: str

    @property
    def settings(self) -> UserSyncSettings:
        return self.base.settings

    def sync(self, settings: UserSyncSettings | None = None) -> RunRecord:
        """One run, contacts and (when on) tasks, as the worker runs it."""
        settings = settings or self.base.settings
        session = self.base.session()
        try:
            return sync_user(settings, self.base.crm, GraphContacts(session), self.base.state,
                             tasks=GraphTasks(session, settings))
        finally:
            session.close()


def make_bad_input_rig(azurite: Azurite, emulator: EmulatorProcess, control: ControlClient, prefix: str,  # noqa: F811
                       graph_url: str | None = None, **settings: Any) -> Iterator[Rig]:
    """The rig's sync talks to `graph_url` (default: the emulator); its Outlook person always to the emulator."""
    base = make_rig(azurite.connection_string, prefix, graph_url or emulator.graph, control, **settings)
    outlook = GraphPerson(emulator.graph, control, base.mailbox)
    account = base.account("Contoso Ltd")
    rig = Rig(base, outlook, account.id)
    rig.sync()  # the folder (and list) exist before the examples start
    try:
        yield rig
    finally:
        outlook.close()


@pytest.fixture(scope="module")
def rig(azurite: Azurite, emulator: EmulatorProcess, emulator_control: ControlClient,  # noqa: F811
        request: pytest.FixtureRequest) -> Iterator[Rig]:
    yield from make_bad_input_rig(azurite, emulator, emulator_control, "bi" + secrets.token_hex(3))
