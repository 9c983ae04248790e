"""Task sync benchmarks (issue 5) and the task rig the end-to-end tests share: Table Storage on Azurite, the
msgraph-sdk adapters on the Microsoft 365 emulator over HTTP, one CRM user with task sync on.

Graph requests are counted from the emulator's request log (HTTP requests, apart from the items inside a
$batch), and split into the task sync's own (To Do, calendar, and the $batch calls that carry their writes)
and the contact sync's, which runs first in every sync_user.

- no change, 1,000 linked tasks: one Graph request for tasks (To Do) / one delta round (calendar);
- initial push of 2,000 tasks: Graph requests ≤ 1.05 × ceil(2000/20) + 5.
"""
from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from bench.harness import ContactRig, make_rig
from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.adapters.graph.contacts import GraphContacts
from sync_core.adapters.graph.tasks import GraphTasks
from sync_core.domain.models import FOLDER_NAME, Account, CrmTask, RunRecord, TaskTarget
from sync_core.sync.user import sync_user

PUSH_COUNT = 2000
LINKED_COUNT = 1000


@dataclass
class TaskRig:
    """A ContactRig whose syncs run the task sync too, with the person in Outlook / To Do beside it."""

    base: ContactRig
    account: Account

    @property
    def settings(self) -> Any:
        return self.base.settings

    @property
    def control(self) -> ControlClient:
        return self.base.control

    def configure(self, **changes: Any) -> None:
        self.base.settings = self.base.settings.model_copy(update=changes)

    def sync(self, now: Callable[[], datetime] | None = None) -> RunRecord:
        """One run as the worker runs it (contacts, then tasks); `now` is the run's clock (the calendar window
        is computed from it)."""
        session = self.base.session()
        try:
            kwargs: dict[str, Any] = {"now": now} if now is not None else {}
            return sync_user(self.settings, self.base.crm, GraphContacts(session), self.base.state,
                             tasks=GraphTasks(session, self.settings), **kwargs)
        finally:
            session.close()

    # -- the CRM -------------------------------------------------------------------------------
    def task(self, assigned_to: str | None = None, **values: Any) -> CrmTask:
        return self.base.crm.create_task(CrmTask(
            id=uuid.uuid4().hex, tenant_id=self.settings.tenant_id, account_id=self.account.id,
            assigned_to=assigned_to or self.settings.user_id, **values))

    def crm_tasks(self) -> list[CrmTask]:
        return self.base.crm.list_tasks(self.settings.tenant_id, limit=100_000)

    # -- the person in Microsoft 365 (the ordinary Graph API with their own token) ----------------
    def outlook(self) -> httpx.Client:
        token = self.control.token(self.base.mailbox["id"])
        return httpx.Client(base_url=self.base.graph_url, headers={"Authorization": f"Bearer {token}"},
                            trust_env=False, timeout=30)

    def todo_list_id(self) -> str:
        with self.outlook() as client:
            lists = client.get("/me/todo/lists").json()["value"]
        ours = [item["id"] for item in lists if item["displayName"] == FOLDER_NAME]
        assert len(ours) == 1, lists
        return str(ours[0])

    def todo_items(self) -> list[dict[str, Any]]:
        with self.outlook() as client:
            answer = client.get(f"/me/todo/lists/{self.todo_list_id()}/tasks?$top=999")
        return list(answer.json()["value"])

    def events(self, start: str = "2000-01-01T00:00:00Z", end: str = "2100-01-01T00:00:00Z") -> list[dict[str, Any]]:
        """What the calendar shows (occurrences of series expanded), in UTC."""
        with self.outlook() as client:
            answer = client.get(f"/me/calendarView?startDateTime={start}&endDateTime={end}&$top=999")
        return list(answer.json()["value"])

    def graph_requests(self, since: int) -> list[dict[str, Any]]:
        return [r for r in self.base.graph_requests(since) if not r.get("in_batch")]


def make_task_rig(azurite: Azurite, graph_url: str, control: ControlClient, prefix: str, **settings: Any) -> TaskRig:
    settings.setdefault("tasks_enabled", True)
    base = make_rig(azurite.connection_string, prefix, graph_url, control, **settings)
    return TaskRig(base, base.account("Acme Ltd"))


def is_task_request(request: dict[str, Any]) -> bool:
    """The task sync's own requests: To Do and calendar paths, and $batch calls (the contact sync of these
    benchmarks has no contacts, so it sends no $batch)."""
    path = str(request.get("path", ""))
    return any(part in path for part in ("/todo/", "/calendarView", "/calendar/", "/events", "$batch"))


def seed_tasks(rig: TaskRig, count: int, start: date) -> None:
    """Tasks due over the next months: all-day ones and timed ones, all inside the calendar window."""
    tasks = []
    for i in range(count):
        day = start + timedelta(days=i % 200)
        values: dict[str, Any] = {"subject": f"Follow-up {i}", "description": f"Call about order {i}"}
        if i % 2:
            values["due_at"] = datetime(day.year, day.month, day.day, 9 + i % 8, 30, tzinfo=UTC)
        else:
            values["due_date"] = day
        tasks.append(CrmTask(id=uuid.uuid4().hex, tenant_id=rig.settings.tenant_id, account_id=rig.account.id,
                             assigned_to=rig.settings.user_id, **values))
    for offset in range(0, count, 1000):
        rig.base.crm.import_tasks(tasks[offset:offset + 1000])


def measure(rig: TaskRig) -> dict[str, Any]:
    since = rig.control.last_request_seq()
    started = time.monotonic()
    run = rig.sync()
    seconds = time.monotonic() - started
    log = rig.graph_requests(since)
    tasks = [r for r in log if is_task_request(r)]
    return {"seconds": round(seconds, 2), "graph_http_requests": len(log), "task_graph_requests": len(tasks),
            "task_paths": sorted({str(r.get("path", "")).split("?")[0] for r in tasks})[:5],
            "outcome": run.outcome.value, "microsoft_created": run.microsoft.created,
            "microsoft_updated": run.microsoft.updated, "crm_created": run.crm.created, "crm_updated": run.crm.updated}


def initial_push(azurite: Azurite, emulator: EmulatorProcess, target: TaskTarget, count: int) -> dict[str, Any]:
    rig = make_task_rig(azurite, emulator.graph, emulator.control_client(), f"tp{target.value[:3]}{count}",
                        task_target=target)
    seed_tasks(rig, count, date.today() + timedelta(days=1))
    result = measure(rig)
    limit = 1.05 * math.ceil(count / 20) + 5
    return {"target": target.value, "tasks": count, **result, "limit": limit,
            "ok": result["graph_http_requests"] <= limit and result["microsoft_created"] == count}


def no_change(azurite: Azurite, emulator: EmulatorProcess, target: TaskTarget, count: int) -> dict[str, Any]:
    rig = make_task_rig(azurite, emulator.graph, emulator.control_client(), f"tn{target.value[:3]}{count}",
                        task_target=target)
    seed_tasks(rig, count, date.today() + timedelta(days=1))
    first = rig.sync()
    settle = rig.sync()  # our own creates come back once in the next delta round (versions only)
    result = measure(rig)
    expected = 1  # To Do: one delta request; calendar: one delta round of one page when nothing changed
    return {"target": target.value, "linked_tasks": count, "first_created": first.microsoft.created,
            "settling_writes": settle.microsoft.created + settle.microsoft.updated + settle.crm.updated, **result,
            "ok": result["task_graph_requests"] == expected and result["microsoft_created"] == 0
            and result["microsoft_updated"] == 0 and result["crm_updated"] == 0}


def run_all(azurite: Azurite, emulator: EmulatorProcess, quick: bool = False) -> dict[str, Any]:
    push_count, linked_count = (200, 100) if quick else (PUSH_COUNT, LINKED_COUNT)
    figures: dict[str, Any] = {"initial_push": {}, "no_change": {}}
    for target in (TaskTarget.TO_DO, TaskTarget.CALENDAR):
        figures["initial_push"][target.value] = initial_push(azurite, emulator, target, push_count)
        figures["no_change"][target.value] = no_change(azurite, emulator, target, linked_count)
    figures["checks"] = {
        f"{kind}_{target}": result["ok"] for kind in ("initial_push", "no_change")
        for target, result in figures[kind].items()
    }
    return figures
