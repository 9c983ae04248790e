"""Helpers of the fault matrix: a connected user with both sides at hand, and waits on its run records."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.chaos_people import GraphPerson
from bench.chaos_stack import ChaosStack
from sync_core.domain.models import FOLDER_NAME, CrmContact, RunOutcome, RunRecord, SyncMode, UserSyncSettings
from sync_core.web.settings_form import form_values
from tests.functions.stack import WebClient, connect_with_emulator, wait_for

LEASE_SECONDS = 8.0  # longer than any run of these tests (Retry-After waits included)
GRAPH_TIMEOUT = 2.0
APP = r"^/(me/|me$|\$batch)"  # the app's own Graph traffic (the test's Outlook person uses /users/{id})


@dataclass
class User:
    stack: ChaosStack
    tenant_id: str
    user_id: str
    ms: dict[str, Any]
    web: WebClient
    account_id: str
    outlook: GraphPerson
    created: list[str] = field(default_factory=list)

    # -- the CRM side ------------------------------------------------------------------------------
    def add_contacts(self, count: int, prefix: str = "P") -> list[CrmContact]:
        made = []
        for index in range(count):
            contact = self.stack.services.crm.create_contact(CrmContact(
                id="", tenant_id=self.tenant_id, account_id=self.account_id, first_name=f"{prefix}{index}",
                last_name=f"Fault {uuid.uuid4().hex[:6]}", emails=(f"{prefix.lower()}{index}.{uuid.uuid4().hex[:6]}@example.com",)))
            made.append(contact)
            self.created.append(contact.id)
        return made

    def crm_contacts(self) -> list[CrmContact]:
        return self.stack.services.crm.list_contacts(self.tenant_id, limit=10_000)

    # -- the Microsoft side ------------------------------------------------------------------------
    def folder_items(self) -> list[dict[str, Any]]:
        self.outlook.forget_folders()
        folder = self.outlook.folder_id(FOLDER_NAME)
        return self.outlook.folder_contacts(folder) if folder else []

    def graph_log(self, since: int) -> list[dict[str, Any]]:
        """The app's requests on this user's mailbox since `since` (emulator request log)."""
        return [e for e in self.stack.control.requests(since=since)
                if e.get("user_id") == self.ms["id"] and e.get("client_id") == self.stack.settings.client_id]

    # -- runs --------------------------------------------------------------------------------------
    def runs(self, limit: int = 100) -> list[RunRecord]:
        return self.stack.services.state.latest_runs(self.tenant_id, self.user_id, limit)

    def enqueue(self) -> datetime:
        """A sync job as the timer's fan-out sends it (no coalescing flag); returns when it was sent."""
        sent = datetime.now(UTC)
        self.stack.services.queue.enqueue_user(self.tenant_id, self.user_id, "test")
        return sent

    def wait_run(self, after: datetime, timeout: float = 60, outcome: RunOutcome | None = None) -> RunRecord:
        """The first run started after `after` that finished (with `outcome`, when given)."""
        def finished() -> RunRecord | None:
            for run in reversed(self.runs(30)):
                if run.started_at >= after and run.outcome is not RunOutcome.RUNNING:
                    if outcome is None or run.outcome is outcome:
                        return run
            return None
        return wait_for(finished, timeout, f"a finished run of {self.user_id}")  # type: ignore[no-any-return]

    def sync(self, timeout: float = 60, every: float = 4.0) -> RunRecord:
        """Enqueue a job and wait for its run; again every `every` seconds while none comes (a job that finds
        the lease held only marks the user dirty, as the timer's next job would find it)."""
        first = self.enqueue()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.wait_run(first, min(every, max(0.1, deadline - time.monotonic())))
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                self.enqueue()

    def sync_until_quiet(self, timeout: float = 90) -> RunRecord:
        """Sync until a run succeeds and writes nothing (everything retried has gone through)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.sync(timeout=max(5.0, deadline - time.monotonic()))
            writes = (run.crm.created + run.crm.updated + run.microsoft.created + run.microsoft.updated
                      + run.microsoft.deleted)
            if run.outcome is RunOutcome.SUCCEEDED and writes == 0:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.user_id} did not settle: last run {run}")

    def page_says(self, text: str, timeout: float = 15) -> str:
        """The settings page once it shows `text` (a run the webhook started may be on it for a moment)."""
        return wait_for(lambda: page if text in (page := self.page()) else None, timeout,  # type: ignore[no-any-return]
                        f"the settings page to say {text!r}", interval=0.5)

    def page(self) -> str:
        self.web.launch(self.tenant_id, self.user_id)
        response = self.web.get("/api/settings")
        assert response.status_code == 200, response.text[:300]
        return response.text


class Connector:
    """Makes connected users; afterwards clears every fault and brings stopped services back."""

    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack
        self.users: list[User] = []

    def __call__(self, contacts: int = 0, mode: SyncMode = SyncMode.TWO_WAY, **settings: Any) -> User:
        stack = self.stack
        tenant = stack.stack.new_tenant()
        user_id = "fault-" + uuid.uuid4().hex[:8]
        account = stack.services.crm.create_account(tenant, "Contoso Ltd", user_id)
        ms = stack.control.create_user()
        web = stack.browser()
        web.launch(tenant, user_id)
        wanted = UserSyncSettings(tenant_id=tenant, user_id=user_id, mode=mode, **settings)
        saved = web.post_form("/api/settings", {**form_values(wanted), "csrf": web.csrf()})
        assert saved.status_code == 303, saved.text[:300]
        user = User(stack, tenant, user_id, ms, web, account.id, GraphPerson(stack.emulator.graph, stack.control, ms))
        self.users.append(user)
        user.add_contacts(contacts)
        page = connect_with_emulator(web, ms)
        assert "Connected to Microsoft 365" in page.text, page.text[:500]
        wait_for(lambda: (c := stack.services.connections.get(tenant, user_id)) and c.last_success_at, 60,
                 "the first sync")
        return user

    def close(self) -> None:
        control = self.stack.control
        control.clear_faults()
        control.http.post("/notifications", json={"duplicate_probability": 0, "delay_ms": 0})
        if self.stack.azurite.proc is None:
            self.stack.azurite.start()
        if not self.stack.devhost.alive:
            self.stack.devhost.start()
        for user in self.users:
            user.outlook.close()
            user.web.close()
