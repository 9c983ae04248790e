"""Run one contact sync in a fresh process and report its peak memory above the idle process.

Seeding happens in the parent, so this process's idle RSS is the worker as it would be before a
run (imports and msgraph-sdk warmed), and its peak is what the sync itself costs.
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import psutil

from bench.harness import ContactRig
from m365_emulator.server import ControlClient
from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.tables.state import TableStateStore
from sync_core.adapters.tables.common import RequestCounter, connect
from sync_core.domain.models import UserSyncSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("connection-string", "prefix", "graph", "control", "mailbox-id", "tenant", "user"):
        parser.add_argument(f"--{name}", required=True)
    ns = parser.parse_args()
    counter = RequestCounter()
    service = connect(ns.connection_string)
    names = lambda base: f"{ns.prefix}{base}"  # noqa: E731
    control = ControlClient(ns.control)
    rig = ContactRig(graph_url=ns.graph, control=control, mailbox={"id": ns.mailbox_id}, crm=TableCrm(service, names, counter=counter),
                     state=TableStateStore(service, names, counter=counter),
                     settings=UserSyncSettings(tenant_id=ns.tenant, user_id=ns.user), storage_counter=counter)
    import msgraph  # noqa: F401  - warm the SDK as a worker would be before its first run
    from sync_core.sync import user as _run  # noqa: F401  - imported as a worker would have it

    process = psutil.Process()
    idle = process.memory_info().rss
    peak = idle
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    run = rig.sync()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    print(json.dumps({"idle_rss_mb": idle / 2**20, "peak_rss_mb": peak / 2**20,
                      "peak_above_idle_mb": (peak - idle) / 2**20, "seconds": seconds,
                      "outcome": run.outcome.value, "created": run.microsoft.created}))


if __name__ == "__main__":
    main()
