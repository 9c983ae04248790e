"""Continuation benchmark (issue 10): a first sync bigger than one invocation's time budget, through the real
worker (devhost's queue trigger, Azurite, the emulator over HTTP), at a ceiling of 1,000 requests per 60 s
(the emulator throttles at it and the product paces to it) with a 60 s budget.

    contacts: 5,000 CRM contacts pushed to Outlook; tasks: 2,000 CRM tasks pushed to To Do

Measured per scenario: the sync_worker invocations the chain took (devhost's own "Executed ... Duration" lines),
the longest (target ≤ budget + 10 %), the total from the first job's enqueue to the last run's end (target
≤ 1.1 × what the ceiling allows for the items), the items in Microsoft 365 and their duplicates (from the
emulator's state: exactly N, none twice), the share of 429 answers (≤ 2 %), and a "Continuing: ..." line
as the settings page showed it during the chain.
"""
from __future__ import annotations

import json
import re
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.domain.models import CrmContact, CrmTask, RunOutcome, RunRecord

LIMIT, WINDOW, BUDGET = 1000, 60.0, 60.0
EXECUTED = re.compile(r"Executed 'Functions\.sync_worker' \((\w+), Id=[^,]+, Duration=(\d+)ms\)")
CONTINUING = re.compile(r"Continuing: [^<]*synced so far")


def run_all(azurite: Azurite, quick: bool = False) -> dict[str, Any]:
    contacts_n, tasks_n = (500, 200) if quick else (5000, 2000)
    limit, window, budget = (100, 60.0, 20.0) if quick else (LIMIT, WINDOW, BUDGET)
    out: dict[str, Any] = {"ceiling": f"{limit}/{window:.0f}s", "budget_seconds": budget}
    with EmulatorProcess(throttle_limit=limit, throttle_window=window) as emulator:
        control = emulator.control_client()
        out["contacts"] = _scenario(azurite, emulator, control, "contacts", contacts_n, limit, window, budget)
        out["tasks"] = _scenario(azurite, emulator, control, "tasks", tasks_n, limit, window, budget)
    out["checks"] = {f"{kind}:{name}": ok for kind in ("contacts", "tasks") for name, ok in out[kind]["checks"].items()}
    return out


def _scenario(azurite: Azurite, emulator: EmulatorProcess, control: ControlClient, kind: str, count: int,
              limit: int, window: float, budget: float) -> dict[str, Any]:
    from devhost.stack import LogCollector, connect_with_emulator, start_stack, wait_for

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-continuation-{kind}-"))
    stack, stop = start_stack(azurite, emulator, control, workdir, LogCollector(), extra_env={
        "GRAPH_RATE_LIMIT": str(limit), "GRAPH_RATE_WINDOW_SECONDS": str(window),
        "SYNC_RUN_BUDGET_SECONDS": str(budget)})
    try:
        tenant, user = stack.new_tenant(), "user-" + uuid.uuid4().hex[:8]
        crm = stack.services.crm
        account = crm.create_account(tenant, "Continuation Ltd", user)
        mailbox = control.create_user()
        web = stack.browser()
        web.launch(tenant, user)

        def latest() -> RunRecord | None:
            runs = stack.services.state.latest_runs(tenant, user, 1)
            return runs[0] if runs else None

        if kind == "contacts":
            _seed_contacts(crm, tenant, account.id, count)
            first_line, since, started = len(stack.devhost_lines()), control.last_request_seq(), datetime.now(UTC)
            connect_with_emulator(web, mailbox)
        else:
            _seed_tasks(crm, tenant, account.id, user, count)
            connect_with_emulator(web, mailbox)  # the first sync: no contacts, tasks off
            wait_for(lambda: (r := latest()) and r.outcome is RunOutcome.SUCCEEDED, 120, "the first contact sync")
            from devhost.stack import VALID_FORM

            first_line, since, started = len(stack.devhost_lines()), control.last_request_seq(), datetime.now(UTC)
            saved = web.post_form("/api/settings", {**VALID_FORM, "csrf": web.csrf(), "tasks_enabled": "on",
                                                    "task_target": "todo"})
            assert saved.status_code == 303, saved.text
        shown: list[str] = []

        def finished() -> bool:
            if not shown and (found := CONTINUING.search(web.get("/api/settings").text)):
                shown.append(found.group(0))
            run = latest()
            return bool(run and run.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL) and run.started_at > started
                        and _in_microsoft(control, mailbox["id"], kind) >= count)

        wait_for(finished, 20 * count / limit * window + 300, f"the {kind} chain to finish", interval=1.0)
        web.close()
        # Oldest first; the chain ends with the first run that finished after the last one that stopped at its
        # budget (notifications of our own writes may start more runs after it, which find nothing to do).
        chain = sorted((r for r in stack.services.state.latest_runs(tenant, user, 500) if r.started_at > started),
                       key=lambda r: r.started_at)
        last_stop = max((i for i, r in enumerate(chain) if r.outcome is RunOutcome.CONTINUING), default=-1)
        ended = next(r for r in chain[last_stop + 1:] if r.outcome in (RunOutcome.SUCCEEDED, RunOutcome.PARTIAL))
        chain = chain[:chain.index(ended) + 1]
        time.sleep(1.0)  # the last job's own "Executed" line follows its run record
        lines = stack.devhost_lines()[first_line:]
        # The job that starts the chain: the connect's for contacts, the settings save's for tasks (the log file
        # may receive the connect's line late, so it is picked by its reason, not by where it lands).
        reason = "connected" if kind == "contacts" else "settings"
        enqueued = next(datetime.fromisoformat(entry["ts"]) for line in lines if line.startswith("{")
                        and (entry := json.loads(line)).get("event") == "enqueue" and entry.get("reason") == reason
                        and datetime.fromisoformat(entry["ts"]) >= started - timedelta(seconds=1))
        assert ended.finished_at is not None
        total = (ended.finished_at - enqueued).total_seconds()
        durations = [int(m.group(2)) / 1000 for line in lines if (m := EXECUTED.search(line))]
        log = [r for r in control.requests(since=since) if r.get("user_id") == mailbox["id"]]
        items = _items(control, mailbox["id"], kind)
    finally:
        stop()
    names = Counter(items)
    throttled = sum(1 for r in log if r.get("status") == 429)
    bound = 1.1 * count / limit * window
    figures: dict[str, Any] = {
        "items": count, "worker_invocations": len(durations), "runs_in_chain": len(chain),
        "run_seconds": [round((r.finished_at - r.started_at).total_seconds(), 1) for r in chain if r.finished_at],
        "runs_continuing": sum(1 for r in chain if r.outcome is RunOutcome.CONTINUING),
        "longest_invocation_seconds": round(max(durations, default=0.0), 1),
        "longest_allowed_seconds": round(1.1 * budget, 1),
        "total_seconds": round(total, 1), "total_allowed_seconds": round(bound, 1),
        "in_microsoft": len(items), "duplicates": len(items) - len(names),
        "requests_counted": len(log), "throttled": throttled, "throttled_share": round(throttled / max(1, len(log)), 4),
        "created_by_runs": sum(r.microsoft.created for r in chain), "page_showed": shown[0] if shown else None,
    }
    figures["checks"] = {
        "continued_over_several_invocations": figures["runs_continuing"] >= 1 and len(durations) >= 2,
        "longest_invocation_within_budget_plus_10pct": figures["longest_invocation_seconds"] <= 1.1 * budget,
        "total_within_1_1x_the_ceiling": total <= bound,
        "every_item_in_microsoft": len(items) == count,
        "no_duplicates": figures["duplicates"] == 0,
        "throttled_at_most_2pct": throttled <= 0.02 * len(log),
        "page_showed_continuing": bool(shown),
    }
    return figures


def _seed_contacts(crm: Any, tenant: str, account_id: str, count: int) -> None:
    contacts = [CrmContact(id="", tenant_id=tenant, account_id=account_id, first_name=f"First{i}", last_name=f"Last{i}",
                           emails=(f"person{i}@example.com",), job_title="Buyer") for i in range(count)]
    for start in range(0, count, 2000):
        crm.import_contacts(contacts[start:start + 2000])


def _seed_tasks(crm: Any, tenant: str, account_id: str, user: str, count: int) -> None:
    first = date.today() + timedelta(days=1)
    tasks = [CrmTask(id=uuid.uuid4().hex, tenant_id=tenant, account_id=account_id, assigned_to=user,
                     subject=f"Follow-up {i}", due_date=first + timedelta(days=i % 200)) for i in range(count)]
    for start in range(0, count, 1000):
        crm.import_tasks(tasks[start:start + 1000])


def _items(control: ControlClient, mailbox_id: str, kind: str) -> list[str]:
    """What is in the user's folder or To Do list, one name per item (the emulator's state: no Graph request)."""
    state = control.state(mailbox_id)
    if kind == "contacts":
        folders = [f for f in state.get("contactFolders", []) if f.get("displayName") == "Really Simple Systems"]
        return [str(c.get("givenName")) for folder in folders for c in folder["contacts"]]
    lists = [t for t in state.get("todoLists", []) if t.get("displayName") == "Really Simple Systems"]
    return [str(task.get("title")) for todo in lists for task in todo["tasks"]]


def _in_microsoft(control: ControlClient, mailbox_id: str, kind: str) -> int:
    return len(_items(control, mailbox_id, kind))
