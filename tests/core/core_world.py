"""A small world for engine tests: a fake CRM, a fake Outlook and a fake state store, wired by sync_user."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.support.fakes import FakeCrm, FakeMicrosoft, FakeStateStore
from sync_core.kinds.contacts.mapping import crm_to_fields, graph_to_contact
from sync_core.domain.models import (
    FOLDER_NAME,
    Account,
    ContactFields,
    CrmContact,
    Link,
    MsContact,
    RunRecord,
    SyncMode,
    UserSyncSettings,
)
from sync_core.sync.user import SyncOptions, sync_user

TENANT = "tenant-1"
USER = "user-1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class World:
    crm: FakeCrm = field(default_factory=FakeCrm)
    ms: FakeMicrosoft = field(default_factory=FakeMicrosoft)
    state: FakeStateStore = field(default_factory=FakeStateStore)
    user: UserSyncSettings = field(default_factory=lambda: UserSyncSettings(tenant_id=TENANT, user_id=USER))
    clock: Clock = field(default_factory=Clock)
    sleeps: list[float] = field(default_factory=list)

    def sync(self, options: SyncOptions = SyncOptions(), **kwargs: Any) -> RunRecord:
        return sync_user(self.user, self.crm, self.ms, self.state, now=self.clock, sleep=self.sleeps.append,
                         options=options, **kwargs)

    def set_mode(self, mode: SyncMode) -> None:
        self.user = self.user.model_copy(update={"mode": mode})

    # --- the CRM
    @property
    def tenant(self) -> str:
        return self.user.tenant_id

    def account(self, name: str, owner: str | None = USER) -> Account:
        return self.crm.add_account(self.tenant, name, owner)

    def contact(self, account: Account, **values: Any) -> CrmContact:
        return self.crm.add_contact(self.tenant, account.id, **values)

    def crm_contacts(self) -> list[CrmContact]:
        return self.crm.contacts_of(self.tenant)

    def crm_fields(self, contact_id: str) -> ContactFields:
        contact = self.crm.contacts[(self.tenant, contact_id)]
        return crm_to_fields(contact, self.crm.accounts[(self.tenant, contact.account_id)].name)

    # --- Outlook
    @property
    def folder(self) -> str:
        (folder_id,) = self.ms.folder_by_name(FOLDER_NAME)
        return folder_id

    def outlook(self) -> dict[str, MsContact]:
        return {ms_id: graph_to_contact(item) for ms_id, item in self.ms.folder_items(self.folder).items()}

    # --- state
    def links(self) -> dict[str, Link]:
        return {link.crm_id: link for link in self.state.iter_links(self.tenant, self.user.user_id)}

    def pairs(self) -> dict[str, str]:
        """CRM id → Outlook id of every LINKED link."""
        return {c: link.ms_id for c, link in self.links().items() if link.state.value == "linked" and link.ms_id}

    def assert_in_step(self) -> None:
        """Every CRM contact of the user's accounts is in Outlook once, with the same content, and nothing else is."""
        outlook = self.outlook()
        pairs = self.pairs()
        assert sorted(pairs.values()) == sorted(outlook), "each folder item is linked exactly once"
        for crm_id, ms_id in pairs.items():
            assert outlook[ms_id].fields == self.crm_fields(crm_id), crm_id
