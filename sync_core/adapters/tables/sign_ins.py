"""Sign-ins in progress in Table Storage: table "oauthflows", PartitionKey "flows", RowKey the state;
the MSAL flow and Microsoft's answer sealed with the token key (AES-GCM), bound to the state."""
from __future__ import annotations

from dataclasses import replace

from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.common import NameFunction, RequestCounter, Table, etag_of, key_part
from sync_core.adapters.tokens import TokenCipher
from sync_core.domain.sign_ins import PendingSignIn

_PARTITION = "flows"


class TableSignIns:
    def __init__(self, service: TableServiceClient, name: NameFunction, cipher: TokenCipher,
                 counter: RequestCounter | None = None) -> None:
        self.table = Table(service, name("oauthflows"), counter or RequestCounter())
        self.cipher = cipher

    def _entity(self, pending: PendingSignIn) -> dict[str, object]:
        state = pending.state
        return {"PartitionKey": _PARTITION, "RowKey": key_part(state), "tenant_id": pending.tenant_id,
                "user_id": pending.user_id, "session_id": pending.session_id, "expires": pending.expires,
                "flow": self.cipher.encrypt(pending.flow, f"flow/{state}"),
                "response": self.cipher.encrypt(pending.response, f"answer/{state}") if pending.response else ""}

    def create(self, pending: PendingSignIn) -> PendingSignIn:
        return replace(pending, etag=self.table.create(self._entity(pending)))

    def get(self, state: str) -> PendingSignIn | None:
        entity = self.table.get(_PARTITION, key_part(state))
        if entity is None:
            return None
        response = str(entity.get("response") or "")
        return PendingSignIn(
            state=state, tenant_id=str(entity["tenant_id"]), user_id=str(entity["user_id"]),
            session_id=str(entity["session_id"]), expires=int(entity["expires"]),
            flow=self.cipher.decrypt(str(entity["flow"]), f"flow/{state}"),
            response=self.cipher.decrypt(response, f"answer/{state}") if response else "", etag=etag_of(entity))

    def save(self, pending: PendingSignIn) -> PendingSignIn:
        return replace(pending, etag=self.table.replace(self._entity(pending), pending.etag))

    def take(self, pending: PendingSignIn) -> None:
        self.table.delete(_PARTITION, key_part(pending.state), pending.etag)
