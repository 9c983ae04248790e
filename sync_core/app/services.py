"""What the app and web modules work with: every store and client as a typed field, filled once per
process by sync_core.bootstrap (which only entry points import)."""
from __future__ import annotations

from dataclasses import dataclass, field

from azure.data.tables import TableServiceClient

from sync_core.adapters.graph.contacts import GraphContacts
from sync_core.adapters.graph.session import GraphSession, Pacer
from sync_core.adapters.graph.tasks import GraphTasks
from sync_core.adapters.queues import SyncQueue
from sync_core.adapters.tables.common import RequestCounter
from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.tokens import MsalCredential
from sync_core.app.oauth import OAuthFlows
from sync_core.domain.models import UserSyncSettings
from sync_core.ports import (
    ConnectionStore,
    NonceStore,
    StateStore,
    SubscriptionStore,
    SyncFlagStore,
    TenantStore,
    TokenStore,
)
from sync_core.settings import AppSettings


@dataclass
class Services:
    settings: AppSettings
    table_service: TableServiceClient
    counter: RequestCounter
    # The sync's CRM ports plus what the local CRM screen and demo seeding use (rename, import): concrete.
    crm: TableCrm
    state: StateStore
    connections: ConnectionStore
    tokens: TokenStore
    tenants: TenantStore
    subscriptions: SubscriptionStore
    nonces: NonceStore
    flags: SyncFlagStore
    oauth: OAuthFlows
    queue: SyncQueue
    # One pacer per mailbox for the life of the process: Outlook's ceiling is per app and mailbox.
    pacers: dict[tuple[str, str], Pacer] = field(default_factory=dict)

    def credential_for(self, tenant_id: str, user_id: str) -> MsalCredential:
        return MsalCredential(
            self.settings, user_id,
            load=lambda: self.tokens.load(tenant_id, user_id),
            save=lambda serialized: self.tokens.save(tenant_id, user_id, serialized),
        )

    def pacer_for(self, tenant_id: str, user_id: str) -> Pacer:
        key = (tenant_id, user_id)
        if key not in self.pacers:
            self.pacers[key] = Pacer(self.settings.graph_rate_limit, self.settings.graph_rate_window_seconds)
        return self.pacers[key]

    def graph_session_for(self, tenant_id: str, user_id: str, credential: object | None = None) -> GraphSession:
        return GraphSession(
            self.settings.graph_base_url,
            credential or self.credential_for(tenant_id, user_id),  # type: ignore[arg-type]
            timeout=self.settings.graph_timeout_seconds,
            pacer=self.pacer_for(tenant_id, user_id),
        )

    def contacts_for(self, session: GraphSession) -> GraphContacts:
        return GraphContacts(session)

    def tasks_for(self, session: GraphSession, settings: UserSyncSettings) -> GraphTasks:
        """The user's task target (To Do or calendar), rendering with their settings (zone, reminders)."""
        return GraphTasks(session, settings)
