"""Cold start of one instance: importing function_app in a fresh process, then a sync's first Graph call.

Each figure comes from a new interpreter (`python -m bench.coldstart --child ...`), because a
warm process has every module cached and measures nothing. The parent takes medians.

    python -m bench --only coldstart        (writes bench/results/coldstart.json)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# What a Functions worker has imported before our code runs; everything else is ours to keep lean.
SDK_PREFIXES = ("msgraph", "msgraph_core", "kiota_")


def _sdk_modules() -> list[str]:
    return sorted(m for m in sys.modules if m.startswith(SDK_PREFIXES))


def _child_import() -> dict[str, Any]:
    started = time.perf_counter()
    import function_app  # noqa: F401  - the measured import

    seconds = time.perf_counter() - started
    return {"import_seconds": seconds, "modules": len(sys.modules), "sdk_modules": len(_sdk_modules()),
            "msgraph_generated_modules": sum(1 for m in sys.modules if m.startswith("msgraph.generated"))}


def _child_eager_sdk() -> dict[str, Any]:
    """What start-up cost while graph_session.py imported the SDK at module level: function_app,
    then the same SDK modules. Run alternately with _child_import, so both see the same load."""
    started = time.perf_counter()
    import function_app  # noqa: F401

    imported = time.perf_counter()
    import kiota_abstractions.request_information  # noqa: F401
    import kiota_authentication_azure.azure_identity_authentication_provider  # noqa: F401
    import kiota_http.middleware  # noqa: F401
    import msgraph  # noqa: F401
    import msgraph.generated.models.o_data_errors.o_data_error  # noqa: F401
    import msgraph_core  # noqa: F401

    done = time.perf_counter()
    return {"import_seconds": imported - started, "sdk_seconds": done - imported, "total_seconds": done - started,
            "sdk_modules": len(_sdk_modules())}


def _child_first_call(graph_url: str, control_url: str, mailbox_id: str) -> dict[str, Any]:
    """import function_app, then what a sync does first: open the user's Graph session and find
    its contact folder. The session is timed apart from the request: it is where the SDK loads."""
    started = time.perf_counter()
    import function_app  # noqa: F401

    imported = time.perf_counter()
    from m365_emulator.server import ControlClient
    from sync_core.adapters.graph.contacts import GraphContacts
    from sync_core.adapters.graph.session import GraphSession
    from sync_core.adapters.tokens import StaticTokenCredential

    control = ControlClient(control_url)
    token = control.token(mailbox_id)  # fetched before the clock: the emulator's control API is not Graph
    sdk_before = len(_sdk_modules())
    session_started = time.perf_counter()
    session = GraphSession(graph_url, StaticTokenCredential(lambda: (token, int(time.time()) + 3000)))
    session_ready = time.perf_counter()
    contacts = GraphContacts(session)
    try:
        folder_id = contacts.ensure_folder("Really Simple Systems", None)
        first_done = time.perf_counter()
        contacts.ensure_folder("Really Simple Systems", folder_id)
        second_done = time.perf_counter()
    finally:
        session.close()
        control.close()
    return {
        "import_seconds": imported - started,
        "session_seconds": session_ready - session_started,
        "first_call_seconds": first_done - session_ready,
        "first_graph_call_total_seconds": first_done - session_started,
        "second_call_seconds": second_done - first_done,
        "sdk_modules_before_session": sdk_before,
        "sdk_modules_after_first_call": len(_sdk_modules()),
        "graph_requests": session.requests_sent,
    }


def _run_child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.coldstart", "--child", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"coldstart child failed ({done.returncode}): {done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_wall_seconds"] = wall
    return figures


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 4)


def measure(graph_url: str, control_url: str, runs: int = 7) -> dict[str, Any]:
    """Median of `runs` fresh processes for each figure. The mailbox is created once; every
    first-call process after the first finds the folder (one GET), as an existing user's sync does."""
    from m365_emulator.server import ControlClient

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    control = ControlClient(control_url)
    try:
        mailbox, _ = control.new_user_with_token()
    finally:
        control.close()
    load_before = os.getloadavg()[0]  # the figures are seconds on a shared machine: say how busy it was
    _run_child(["import"], env)  # compiles .pyc files once, as a deployed package ships them warm
    imports: list[dict[str, Any]] = []
    eager: list[dict[str, Any]] = []
    for _ in range(runs):  # alternately, so a busy machine slows both alike
        imports.append(_run_child(["import"], env))
        eager.append(_run_child(["eager-sdk"], env))
    calls = [_run_child(["first-call", graph_url, control_url, str(mailbox["id"])], env) for _ in range(runs)]
    figures = {
        "runs": runs,
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "import_function_app": {
            "median_seconds": _median(imports, "import_seconds"),
            "min_seconds": round(min(r["import_seconds"] for r in imports), 4),
            "max_seconds": round(max(r["import_seconds"] for r in imports), 4),
            "median_process_wall_seconds": _median(imports, "process_wall_seconds"),
            "modules_loaded": imports[0]["modules"],
            "sdk_modules_loaded": max(r["sdk_modules"] for r in imports),
            "msgraph_generated_modules_loaded": max(r["msgraph_generated_modules"] for r in imports),
        },
        "start_up_with_sdk_imported_eagerly": {
            "median_import_function_app_seconds": _median(eager, "import_seconds"),
            "median_sdk_import_seconds": _median(eager, "sdk_seconds"),
            "median_total_seconds": _median(eager, "total_seconds"),
            "sdk_modules_loaded": max(r["sdk_modules"] for r in eager),
        },
        "first_graph_call": {
            "median_session_seconds": _median(calls, "session_seconds"),
            "median_first_call_seconds": _median(calls, "first_call_seconds"),
            "median_first_graph_call_total_seconds": _median(calls, "first_graph_call_total_seconds"),
            "median_second_call_seconds": _median(calls, "second_call_seconds"),
            "sdk_modules_after_first_call": max(r["sdk_modules_after_first_call"] for r in calls),
        },
        "raw": {"import": imports, "eager_sdk": eager, "first_call": calls},
    }
    figures["checks"] = {
        "import_loads_no_msgraph_generated": figures["import_function_app"]["msgraph_generated_modules_loaded"] == 0,
        "first_call_answered": all(r["graph_requests"] >= 1 for r in calls),
    }
    figures["ok"] = all(figures["checks"].values())
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coldstart")
    parser.add_argument("--child", nargs="+", required=True, help="import | eager-sdk | first-call GRAPH CONTROL MAILBOX_ID")
    ns = parser.parse_args(argv)
    kind, *rest = ns.child
    children = {"import": _child_import, "eager-sdk": _child_eager_sdk}
    result = children[kind]() if kind in children else _child_first_call(*rest)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
