"""Freshness benchmarks (issue 6): webhook latency from an Outlook edit to the CRM record, and the
timer tick's fan-out for many connected users, both on the real stack (devhost, Azurite, emulator)."""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from devhost.azurite import Azurite
from m365_emulator.server import EmulatorProcess
from sync_core.adapters.tables.common import Op, Table, key_part
from sync_core.bootstrap import build_services
from sync_core.domain.connections import ConnectionStatus
from sync_core.app.jobs import fan_out
from sync_core.domain.models import CrmContact, UserSyncSettings
from sync_core.settings import load_settings
from sync_core.domain.tenants import Plan, Tenant


def webhook_latency(azurite: Azurite, emulator: EmulatorProcess, edits: int = 50) -> dict[str, Any]:
    from devhost.stack import LogCollector, connect_with_emulator, start_stack, wait_for, wait_subscribed

    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    control = emulator.control_client()
    stack, stop = start_stack(azurite, emulator, control, workdir, LogCollector())
    try:
        tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
        account = stack.services.crm.create_account(tenant, "Latency Ltd", user)
        contact = stack.services.crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=account.id,
                                                               first_name="Edit", last_name="Me"))
        mailbox, _ = control.new_user_with_token()
        web = stack.browser()
        web.launch(tenant, user)
        connect_with_emulator(web, mailbox)
        link = wait_for(lambda: (found := stack.services.state.get_links_by_crm(tenant, user, [contact.id]).get(contact.id))
                        and found.ms_id and found, 60, "the first sync")
        wait_subscribed(stack, tenant, user)
        token = control.token(mailbox["id"])
        latencies: list[float] = []
        with httpx.Client(trust_env=False, headers={"Authorization": f"Bearer {token}"}) as outlook:
            for edit in range(edits):
                title = f"Title {edit} {uuid.uuid4().hex[:4]}"
                started = time.monotonic()
                outlook.patch(f"{emulator.graph}/me/contacts/{link.ms_id}", json={"jobTitle": title}).raise_for_status()
                wait_for(lambda: stack.services.crm.get_contacts(tenant, [contact.id])[contact.id].job_title == title,
                         60, f"edit {edit}", interval=0.02)
                latencies.append(time.monotonic() - started)
                time.sleep(0.2)  # a person does not edit the same contact 50 times a second
        web.close()
    finally:
        stop()
    ordered = sorted(latencies)
    p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
    return {"edits": edits, "p50_seconds": round(statistics.median(ordered), 3), "p95_seconds": round(p95, 3),
            "max_seconds": round(ordered[-1], 3), "ok": p95 <= 5.0}


def timer_fan_out(azurite: Azurite, users: int = 10_000, tenants: int = 100) -> dict[str, Any]:
    import base64
    import os
    import secrets

    prefix = "fan" + secrets.token_hex(3)
    settings = load_settings({
        "AzureWebJobsStorage": azurite.connection_string, "GRAPH_CLIENT_ID": "bench", "GRAPH_CLIENT_SECRET": "bench",
        "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PUBLIC_BASE_URL": "http://127.0.0.1:7071", "CRM_LAUNCH_SECRET": secrets.token_hex(32),
        "STORAGE_PREFIX": prefix, "SYNC_QUEUE_NAME": f"{prefix}-sync-jobs"})
    services = build_services(settings)
    table: Table = services.connections.table
    per_tenant = users // tenants
    for t in range(tenants):
        tenant_id = f"tenant-{t:04d}"
        services.tenants.save(Tenant(id=tenant_id, plan=Plan.PAID))
        rows = []
        for u in range(per_tenant):
            user_id = f"user-{t:04d}-{u:04d}"
            rows.append(Op("upsert", {
                "PartitionKey": key_part(tenant_id), "RowKey": key_part(user_id), "tenant_id": tenant_id,
                "user_id": user_id, "status": ConnectionStatus.CONNECTED.value,
                "settings": UserSyncSettings(tenant_id=tenant_id, user_id=user_id).model_dump_json()}))
        for start in range(0, len(rows), 100):
            table.transact(rows[start:start + 100])
    # Peak memory from RSS samples only: tracemalloc would slow every allocation of the tick it measures.
    peak_rss = _RssPeak()
    started = time.monotonic()
    sent = fan_out(services)
    seconds = time.monotonic() - started
    rss = peak_rss.stop()
    depth = services.queue._client.get_queue_properties().approximate_message_count  # noqa: SLF001
    return {"users": users, "sent": sent, "queue_depth": depth, "seconds": round(seconds, 2),
            "rss_peak_above_start_mb": rss, "ok": sent == users and depth == users and seconds <= 15}


class _RssPeak:
    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._start = self._process.memory_info().rss
        self._peak = self._start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            self._peak = max(self._peak, self._process.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return round((self._peak - self._start) / 2**20, 1)
