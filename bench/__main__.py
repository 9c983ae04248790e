"""`make bench`: run the benchmarks, print the figures, write bench/results/*.json.

    python -m bench [--quick] [--only contacts|pacing|tasks|webhook|fanout|coldstart|continuation]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devhost.azurite import Azurite
from m365_emulator.server import EmulatorProcess

RESULTS = Path(__file__).resolve().parent / "results"


def write(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}, **figures}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not the issue's figures)")
    parser.add_argument("--only", action="append", default=[], help="run only these benchmarks")
    parser.add_argument("--sizes", default="", help="linked-contact sizes, e.g. 1000,10000,50000 (default)")
    ns = parser.parse_args(argv)
    wanted = set(ns.only) or {"contacts", "pacing", "tasks", "webhook", "fanout", "coldstart", "continuation"}
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    azurite = Azurite(log_path=workdir / "azurite.log").start()
    try:
        with EmulatorProcess(workdir=workdir / "emulator") as emulator:
            from bench import contacts

            if "contacts" in wanted:
                push = contacts.initial_push(azurite, emulator, 500 if ns.quick else 5000)
                sizes = ([int(x) for x in ns.sizes.split(",")] if ns.sizes
                         else [200, 1000] if ns.quick else [1000, 10_000, 50_000])

                def contact_figures(linked: dict[str, Any]) -> dict[str, Any]:
                    biggest = linked[max(linked, key=int)]
                    rounds = {size: v for size, v in linked.items() if "no_change" in v}  # a size in progress has none
                    reads = {size: rounds[size]["no_change"]["storage_reads"] for size in rounds}
                    return {
                        "initial_push": push,
                        "sizes_asked": sizes,
                        "linked": linked,
                        "checks": {
                            "initial_push_requests_within_limit": push["ok"],
                            "no_change_one_graph_request": all(v["no_change"]["graph_http_requests"] == 1 for v in rounds.values()),
                            "no_change_storage_reads_constant": len(set(reads.values())) == 1,
                            "one_change_at_most_3_requests": all(v["one_changed"]["graph_http_requests"] <= 3 for v in rounds.values()),
                            "peak_memory_within_150mb": biggest["initial_sync_memory"]["peak_above_idle_mb"] <= 150,
                            "all_sizes_measured": len(rounds) == len(sizes),
                        },
                    }

                linked = contacts.linked_scenarios(azurite, emulator, sizes,
                                                   done=lambda so_far: write("contacts", contact_figures(so_far)))
                figures = contact_figures(linked)
                print(f"contacts: {json.dumps(figures['checks'])} -> {write('contacts', figures)}")
                failures += [k for k, ok in figures["checks"].items() if not ok]
            if "pacing" in wanted:
                result = contacts.pacing(azurite, count=600 if ns.quick else 3000, limit=200 if ns.quick else 1000)
                print(f"pacing: {json.dumps(result)} -> {write('pacing', result)}")
                if not result["ok"]:
                    failures.append("pacing")
            if "tasks" in wanted:
                from bench import tasks

                figures = tasks.run_all(azurite, emulator, quick=ns.quick)
                print(f"tasks: {json.dumps(figures['checks'])} -> {write('tasks', figures)}")
                failures += [f"tasks:{k}" for k, ok in figures["checks"].items() if not ok]
            if "continuation" in wanted:
                from bench import continuation

                figures = continuation.run_all(azurite, quick=ns.quick)
                print(f"continuation: {json.dumps(figures['checks'])} -> {write('continuation', figures)}")
                failures += [f"continuation:{k}" for k, ok in figures["checks"].items() if not ok]
            if "webhook" in wanted:
                from bench import freshness

                result = freshness.webhook_latency(azurite, emulator, edits=10 if ns.quick else 50)
                print(f"webhook: {json.dumps(result)} -> {write('webhook', result)}")
                if not result["ok"]:
                    failures.append("webhook")
            if "coldstart" in wanted:
                from bench import coldstart

                result = coldstart.measure(emulator.graph, emulator.control, runs=3 if ns.quick else 7)
                print(f"coldstart: {json.dumps({k: result[k] for k in ('import_function_app', 'start_up_with_sdk_imported_eagerly', 'first_graph_call', 'checks')})}"
                      f" -> {write('coldstart', result)}")
                if not result["ok"]:
                    failures.append("coldstart")
            if "fanout" in wanted:
                from bench import freshness

                result = freshness.timer_fan_out(azurite, users=1000 if ns.quick else 10_000)
                print(f"fanout: {json.dumps(result)} -> {write('fanout', result)}")
                if not result["ok"]:
                    failures.append("fanout")
    finally:
        azurite.stop()
    if failures:
        print("FAILED: " + ", ".join(failures))
        return 1
    print("all benchmark checks met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
