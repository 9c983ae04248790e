"""Contact sync benchmarks (issue 4), against Azurite and the Microsoft 365 emulator over HTTP.

Graph requests are counted from the emulator's request log (HTTP requests apart from the batch
items inside them); storage requests from the adapters' counter.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from bench.harness import ContactRig, make_rig
from devhost.azurite import Azurite
from m365_emulator.server import EmulatorProcess
from sync_core.domain.models import CrmContact

ROOT = Path(__file__).resolve().parent.parent


def seed_crm(rig: ContactRig, count: int, accounts: int = 50) -> None:
    made = [rig.account(f"Account {i:03d} Ltd") for i in range(accounts)]
    contacts = [CrmContact(id="", tenant_id=rig.settings.tenant_id, account_id=made[i % accounts].id,
                           first_name=f"First{i}", last_name=f"Last{i}", emails=(f"person{i}@example.com",),
                           job_title="Buyer", business_phone=f"+44 20 7946 {i % 10000:04d}") for i in range(count)]
    for start in range(0, count, 2000):
        rig.crm.import_contacts(contacts[start:start + 2000])


def http_requests(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in log if not r.get("in_batch")]


def measure_sync(rig: ContactRig) -> dict[str, Any]:
    since = rig.control.last_request_seq()
    reads_before = rig.storage_counter.reads
    started = time.monotonic()
    run = rig.sync()
    log = rig.graph_requests(since)
    return {"seconds": round(time.monotonic() - started, 3), "graph_http_requests": len(http_requests(log)),
            "graph_batch_items": len([r for r in log if r.get("in_batch")]),
            "storage_reads": rig.storage_counter.reads - reads_before, "outcome": run.outcome.value,
            "microsoft_created": run.microsoft.created, "microsoft_updated": run.microsoft.updated}


def initial_push(azurite: Azurite, emulator: EmulatorProcess, count: int) -> dict[str, Any]:
    rig = make_rig(azurite.connection_string, f"b{count}", emulator.graph, emulator.control_client())
    seed_crm(rig, count)
    result = measure_sync(rig)
    limit = 1.05 * math.ceil(count / 20) + 5
    return {"contacts": count, **result, "limit": limit, "ok": result["graph_http_requests"] <= limit
            and result["microsoft_created"] == count}


def linked_scenarios(azurite: Azurite, emulator: EmulatorProcess, sizes: list[int],
                     done: Callable[[dict[str, Any]], None] = lambda _: None) -> dict[str, Any]:
    """Each size in turn; `done` gets the figures so far after each (a 50k size runs long on Azurite)."""
    out: dict[str, Any] = {}
    for size in sizes:
        rig = make_rig(azurite.connection_string, f"l{size}", emulator.graph, emulator.control_client())
        seed_crm(rig, size)
        memory = run_in_fresh_process(azurite, emulator, rig)
        out[str(size)] = {"initial_sync_memory": memory}
        done(out)  # written at once: the rounds below wait out the mailbox's request ceiling after a big push
        echo = measure_sync(rig)  # the first delta after a push returns our own creates: settled, not re-sent
        no_change = measure_sync(rig)  # the steady state: nothing changed anywhere
        # One CRM edit: exactly that contact moves.
        contact = next(iter(rig.crm.list_contacts(rig.settings.tenant_id, limit=1)))
        rig.crm.update_contact(contact.model_copy(update={"job_title": "Head of Buying"}))
        one_change = measure_sync(rig)
        out[str(size)] = {"initial_sync_memory": memory, "echo_round": echo, "no_change": no_change,
                          "one_changed": one_change}
        done(out)
    return out


def run_in_fresh_process(azurite: Azurite, emulator: EmulatorProcess, rig: ContactRig) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.sync_once", "--connection-string", azurite.connection_string,
            "--prefix", rig.prefix, "--graph", emulator.graph, "--control", emulator.control,
            "--mailbox-id", rig.mailbox["id"], "--tenant", rig.settings.tenant_id, "--user", rig.settings.user_id]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=3600, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def pacing(azurite: Azurite, count: int = 3000, limit: int = 1000, window: float = 60.0) -> dict[str, Any]:
    with EmulatorProcess(throttle_limit=limit, throttle_window=window) as emulator:
        rig = make_rig(azurite.connection_string, "pace", emulator.graph, emulator.control_client())
        rig.pacer = type(rig.pacer)(limit, window)
        seed_crm(rig, count)
        since = rig.control.last_request_seq()
        started = time.monotonic()
        run = rig.sync()
        seconds = time.monotonic() - started
        log = rig.graph_requests(since)
    throttled = [r for r in log if r.get("status") == 429]
    bound = 1.2 * count / limit * window  # the ceiling's own time for `count` items, +20 %
    return {"contacts": count, "limit": f"{limit}/{window:.0f}s", "seconds": round(seconds, 1), "bound_seconds": bound,
            "requests_counted": len(log), "throttled": len(throttled),
            "throttled_share": round(len(throttled) / max(1, len(log)), 4), "created": run.microsoft.created,
            "ok": seconds <= bound and len(throttled) <= 0.02 * len(log) and run.microsoft.created == count}
