"""The composition root: real adapters built from settings, once per process."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.connections import TableConnections, TableTokens
from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.graph.contacts import GraphContacts
from sync_core.adapters.graph.session import GraphSession, Pacer
from sync_core.adapters.graph.tasks import GraphTasks
from sync_core.adapters.queues import SyncQueue
from sync_core.adapters.tables.state import TableStateStore
from sync_core.adapters.tables.common import RequestCounter, connect
from sync_core.adapters.tokens import MsalCredential, TokenCipher
from sync_core.domain.models import UserSyncSettings
from sync_core.logs import register_secret
from sync_core.app.oauth import OAuthFlows
from sync_core.settings import AppSettings, get_settings


@dataclass
class Services:
    settings: AppSettings
    table_service: TableServiceClient
    counter: RequestCounter
    crm: TableCrm
    state: TableStateStore
    connections: TableConnections
    tokens: TableTokens
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


def build_services(settings: AppSettings | None = None) -> Services:
    settings = settings or get_settings()
    return _build(settings)


@functools.lru_cache(maxsize=8)
def _build(settings: AppSettings) -> Services:
    for secret in (settings.client_secret, settings.crm_launch_secret, settings.token_encryption_key):
        register_secret(secret)
    service = connect(settings.storage_connection_string)
    counter = RequestCounter()
    name = settings.storage_name
    connections = TableConnections(service, name, counter)
    tokens = TableTokens(service, name, TokenCipher(settings.token_key_bytes), counter)
    return Services(
        settings=settings, table_service=service, counter=counter,
        crm=TableCrm(service, name, counter=counter),
        state=TableStateStore(service, name, counter=counter),
        connections=connections, tokens=tokens,
        oauth=OAuthFlows(settings, service, name, connections, tokens, counter),
        queue=SyncQueue(settings.storage_connection_string, settings.sync_queue_name),
    )
