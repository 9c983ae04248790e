"""A sync larger than one invocation's time budget (issue 10), through the real worker: the app runs in its own
devhost with SYNC_RUN_BUDGET_SECONDS=1, so every queue job stops after a chunk, keeps its progress and queues a
continuation; the chain ends with every contact and task in Microsoft 365 exactly once."""
from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.domain.models import CrmContact, CrmTask, RunOutcome
from tests.functions.stack import LogCollector, Stack, WebClient, connect_with_emulator, start_stack, wait_for
from devhost.stack import VALID_FORM

CONTACTS = 120  # six chunks of 20 at a 1 s budget: more than one run can do
TASKS = 60  # three chunks
PROGRESS = re.compile(r"Continuing: ([\d,]+) of ([\d,]+) contacts( and ([\d,]+) of ([\d,]+) tasks)? synced so far")


@pytest.fixture(scope="module")
def tight(azurite: Azurite, emulator: EmulatorProcess, emulator_control: ControlClient, log_collector: LogCollector,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    found, stopper = start_stack(azurite, emulator, emulator_control, tmp_path_factory.mktemp("tight-stack"),
                                 log_collector, extra_env={"SYNC_RUN_BUDGET_SECONDS": "1"})
    try:
        yield found
    finally:
        stopper()


def _graph_all(stack: Stack, ms_user: dict[str, Any], path: str) -> list[dict[str, Any]]:
    token = stack.control.token(ms_user["id"])
    items: list[dict[str, Any]] = []
    url: str | None = stack.emulator.graph + path
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=30) as client:
        while url:
            page = client.get(url)
            page.raise_for_status()
            body = page.json()
            items += body["value"]
            url = body.get("@odata.nextLink")
    return items


def _folder_contacts(stack: Stack, ms_user: dict[str, Any]) -> list[dict[str, Any]]:
    folders = [f for f in _graph_all(stack, ms_user, "/me/contactFolders") if f["displayName"] == "Really Simple Systems"]
    assert len(folders) == 1
    return _graph_all(stack, ms_user, f"/me/contactFolders/{folders[0]['id']}/contacts?$top=100")


def _todo_tasks(stack: Stack, ms_user: dict[str, Any]) -> list[dict[str, Any]]:
    lists = [item for item in _graph_all(stack, ms_user, "/me/todo/lists") if item["displayName"] == "Really Simple Systems"]
    assert len(lists) == 1
    return _graph_all(stack, ms_user, f"/me/todo/lists/{lists[0]['id']}/tasks?$top=100")


def _continuations(stack: Stack) -> int:
    return sum("sync enqueued (continuation)" in line for line in stack.devhost_lines())


def test_a_sync_over_the_budget_continues_in_new_jobs_until_everything_is_in_microsoft_once(
        tight: Stack, emulator_control: ControlClient) -> None:
    ms_user = emulator_control.create_user()
    tenant, user = tight.new_tenant(), "user-" + uuid.uuid4().hex[:8]
    crm = tight.services.crm
    account = crm.create_account(tenant, "Continental", user)
    for index in range(CONTACTS):
        crm.create_contact(CrmContact(id="", tenant_id=tenant, account_id=account.id, first_name=f"Person{index:03d}",
                                      last_name="Budget"))
    for index in range(TASKS):
        crm.create_task(CrmTask(id="", tenant_id=tenant, account_id=account.id, assigned_to=user,
                                subject=f"Task {index:02d}", due_date=date(2030, 1, 1) + timedelta(days=index)))
    before = _continuations(tight)
    web = WebClient(tight)
    try:
        web.launch(tenant, user)
        connect_with_emulator(web, ms_user)
        saved = web.post_form("/api/settings", {**VALID_FORM, "csrf": web.csrf(), "tasks_enabled": "on",
                                                "task_target": "todo"})
        assert saved.status_code == 303

        # In between, the page says the sync is continuing, with how far it has come.
        seen: list[tuple[int, int]] = []

        def continuing() -> bool:
            found = PROGRESS.search(web.get("/api/settings").text)
            if found:
                seen.append((int(found.group(1).replace(",", "")), int(found.group(2).replace(",", ""))))
            return bool(seen)

        wait_for(continuing, 120, "the page to show the sync continuing", interval=0.05)
        assert all(done <= total for done, total in seen)

        def finished() -> bool:
            runs = tight.services.state.latest_runs(tenant, user, 1)
            return bool(runs) and runs[0].outcome is RunOutcome.SUCCEEDED and runs[0].progress is not None \
                and runs[0].progress.tasks_total > 0
        try:
            wait_for(finished, 120, "the continued sync to finish contacts and tasks")
        except AssertionError:
            runs = tight.services.state.latest_runs(tenant, user, 100)
            raise AssertionError("the chain did not finish: " + "; ".join(
                f"{r.outcome.value} {r.progress} created={r.microsoft.created} {r.error} {r.log[-3:]}" for r in runs[:12]))
        page = web.get("/api/settings").text
        assert not PROGRESS.search(page)
    finally:
        web.close()

    runs = tight.services.state.latest_runs(tenant, user, 100)
    continued = [r for r in runs if r.outcome is RunOutcome.CONTINUING]
    # 120 contacts and 60 tasks in chunks of 20 do not fit in one 1 s run; how many runs it takes depends on speed.
    # The run after the chain's last continuing one ended it; later runs (notifications of our own writes)
    # may be running or done by now.
    oldest_first = list(reversed(runs))
    last = max((i for i, r in enumerate(oldest_first) if r.outcome is RunOutcome.CONTINUING), default=-1)
    assert continued and last + 1 < len(oldest_first), [r.outcome for r in runs]
    end = oldest_first[last + 1]
    assert end.outcome is RunOutcome.SUCCEEDED, [r.outcome for r in runs]
    assert _continuations(tight) - before >= len(continued) - 1  # coalesced into a queued job at most once
    final = end.progress
    assert final is not None
    assert (final.contacts_done, final.contacts_total) == (CONTACTS, CONTACTS)
    assert (final.tasks_done, final.tasks_total) == (TASKS, TASKS)
    # Every run of the chain stayed near the budget (one chunk of 20 at most past it).
    for run in continued:
        assert run.finished_at is not None and (run.finished_at - run.started_at).total_seconds() < 15

    names = Counter(c["givenName"] for c in _folder_contacts(tight, ms_user))
    assert names == Counter(f"Person{index:03d}" for index in range(CONTACTS))
    titles = Counter(t["title"] for t in _todo_tasks(tight, ms_user))
    assert titles == Counter(f"Task {index:02d}" for index in range(TASKS))
    assert sum(r.microsoft.created for r in runs) == CONTACTS + TASKS  # nothing was sent twice
