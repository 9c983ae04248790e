"""A real sync rig for end-to-end tests and benchmarks: Table Storage adapters on Azurite and the
msgraph-sdk adapter on the Microsoft 365 emulator, for one CRM user and one mailbox."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from m365_emulator.server import ControlClient
from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.graph.contacts import GraphContacts
from sync_core.adapters.graph.session import GraphSession, Pacer
from sync_core.adapters.tables.state import TableStateStore
from sync_core.adapters.tables.common import RequestCounter, connect
from sync_core.adapters.tokens import StaticTokenCredential
from sync_core.domain.models import Account, CrmContact, RunRecord, UserSyncSettings


def _name_function(prefix: str):  # type: ignore[no-untyped-def]
    return lambda base: f"{prefix}{base}"


@dataclass
class ContactRig:
    graph_url: str
    control: ControlClient
    mailbox: dict[str, Any]  # the emulator user: id, userPrincipalName, password
    crm: TableCrm
    state: TableStateStore
    settings: UserSyncSettings
    storage_counter: RequestCounter
    prefix: str = ""
    pacer: Pacer = field(default_factory=lambda: Pacer(10_000, 600))
    timeout: float = 30.0

    def session(self) -> GraphSession:
        user_id = self.mailbox["id"]
        credential = StaticTokenCredential(lambda: (self.control.token(user_id), int(time.time()) + 3000))
        return GraphSession(self.graph_url, credential, timeout=self.timeout, pacer=self.pacer)

    def sync(self, **kwargs: Any) -> RunRecord:
        from sync_core.sync.user import sync_user

        session = self.session()
        try:
            return sync_user(self.settings, self.crm, GraphContacts(session), self.state, **kwargs)
        finally:
            session.close()

    def graph_requests(self, since: int) -> list[dict[str, Any]]:
        return [r for r in self.control.requests(since=since) if r.get("user_id") == self.mailbox["id"]]

    # -- CRM side helpers --------------------------------------------------------------------
    def account(self, name: str) -> Account:
        return self.crm.create_account(self.settings.tenant_id, name, self.settings.user_id)

    def contact(self, account: Account, first: str, last: str, email: str | None = None, **extra: Any) -> CrmContact:
        return self.crm.create_contact(CrmContact(
            id=uuid.uuid4().hex, tenant_id=self.settings.tenant_id, account_id=account.id, first_name=first,
            last_name=last, emails=(email,) if email else (), **extra))


def make_rig(connection_string: str, prefix: str, graph_url: str, control: ControlClient,
             **settings: Any) -> ContactRig:
    counter = RequestCounter()
    service = connect(connection_string)
    names = _name_function(prefix)
    mailbox, _ = control.new_user_with_token()
    tenant_id = "tenant-" + uuid.uuid4().hex[:8]
    user_id = "user-" + uuid.uuid4().hex[:8]
    return ContactRig(
        graph_url=graph_url, control=control, mailbox=mailbox,
        crm=TableCrm(service, names, counter=counter), state=TableStateStore(service, names, counter=counter),
        settings=UserSyncSettings(tenant_id=tenant_id, user_id=user_id, **settings), storage_counter=counter,
        prefix=prefix,
    )
