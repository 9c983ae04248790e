"""The composition root: real adapters built from settings, once per process. Only entry points
(functions/, devhost, the CLI, tests and bench) import it; everything else receives Services."""
from __future__ import annotations

import functools

from sync_core.adapters.queues import SyncQueue
from sync_core.adapters.tables.common import RequestCounter, connect
from sync_core.adapters.tables.connections import TableConnections, TableTokens
from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.tables.nonces import TableNonces
from sync_core.adapters.tables.sign_ins import TableSignIns
from sync_core.adapters.tables.state import TableStateStore
from sync_core.adapters.tables.subscriptions import TableSubscriptions
from sync_core.adapters.tables.sync_flags import TableSyncFlags
from sync_core.adapters.tables.tenants import TableTenants
from sync_core.adapters.tokens import TokenCipher
from sync_core.app.oauth import OAuthFlows
from sync_core.app.services import Services
from sync_core.logs import register_secret
from sync_core.settings import AppSettings, get_settings


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
    cipher = TokenCipher(settings.token_key_bytes)
    connections = TableConnections(service, name, counter)
    tokens = TableTokens(service, name, cipher, counter)
    return Services(
        settings=settings, table_service=service, counter=counter,
        crm=TableCrm(service, name, counter=counter),
        state=TableStateStore(service, name, counter=counter),
        connections=connections, tokens=tokens,
        tenants=TableTenants(service, name, counter),
        subscriptions=TableSubscriptions(service, name, cipher, counter),
        nonces=TableNonces(service, name, counter),
        flags=TableSyncFlags(service, name, counter),
        oauth=OAuthFlows(settings, TableSignIns(service, name, cipher, counter), connections, tokens),
        queue=SyncQueue(settings.storage_connection_string, settings.sync_queue_name),
    )
