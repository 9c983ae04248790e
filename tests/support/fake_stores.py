"""The CRM and the state store for engine tests: the memory adapters with injected faults and call counts, and
the CRM's own users at work (their writes feed the change feed like any other, and never meet a fault)."""
from __future__ import annotations

from typing import Any

from sync_core.adapters.memory import MemoryCrm, MemoryStateStore
from sync_core.domain.models import Account, CrmContact, CrmTask
from tests.support.faults import Faulty, with_faults

CRM_METHODS = ("read_changes", "feed_position", "get_contacts", "get_accounts", "find_accounts_by_name",
               "list_accounts", "list_contacts", "create_account", "create_contact", "update_contact",
               "delete_contact", "find_contacts_by_email", "get_tasks", "tasks_assigned_to", "create_task",
               "update_task", "delete_task")


@with_faults(*CRM_METHODS)
class FakeCrm(Faulty, MemoryCrm):
    """MemoryCrm with `faults`, `calls`, and helpers acting as a CRM user."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_faults()

    # -- a CRM user at work on contacts (through the port's write paths, so the calls are counted)
    def add_account(self, tenant_id: str, name: str, owner_user_id: str | None) -> Account:
        with self._unfaulted():
            return self.create_account(tenant_id, name, owner_user_id)

    def add_contact(self, tenant_id: str, account_id: str, **values: Any) -> CrmContact:
        with self._unfaulted():
            return self.create_contact(CrmContact(id="", tenant_id=tenant_id, account_id=account_id, **values))

    def edit_contact(self, tenant_id: str, contact_id: str, **changes: Any) -> CrmContact:
        with self._unfaulted():
            current = self.contacts[(tenant_id, contact_id)]
            return self.update_contact(current.model_copy(update=changes))

    def remove_contact(self, tenant_id: str, contact_id: str) -> None:
        with self._unfaulted():
            self.delete_contact(tenant_id, contact_id)

    def contacts_of(self, tenant_id: str) -> list[CrmContact]:
        with self._lock:
            return sorted((c for (t, _), c in self.contacts.items() if t == tenant_id), key=lambda c: c.id)

    # -- a CRM user at work on tasks (not counted: the sync's calls are what tests count)
    def add_task(self, tenant_id: str, account_id: str, assigned_to: str, **values: Any) -> CrmTask:
        return MemoryCrm.create_task(self, CrmTask(id="", tenant_id=tenant_id, account_id=account_id,
                                                   assigned_to=assigned_to, **values))

    def edit_task(self, tenant_id: str, task_id: str, **changes: Any) -> CrmTask:
        with self._lock:
            return MemoryCrm.update_task(self, self.tasks[(tenant_id, task_id)].model_copy(update=changes))

    def remove_task(self, tenant_id: str, task_id: str) -> None:
        MemoryCrm.delete_task(self, tenant_id, task_id)

    def tasks_of(self, tenant_id: str) -> list[CrmTask]:
        with self._lock:
            return sorted((t for (tn, _), t in self.tasks.items() if tn == tenant_id), key=lambda t: t.id)


STATE_METHODS = ("get_links_by_crm", "get_links_by_ms", "iter_links", "save_link", "delete_link", "get_cursor",
                 "save_cursor", "save_run", "latest_runs", "acquire_lease", "release_lease", "put_quarantine",
                 "list_quarantine", "clear_quarantine")


@with_faults(*STATE_METHODS)
class FakeStateStore(Faulty, MemoryStateStore):
    """MemoryStateStore with `faults` and `calls`; `reads` counts the reads (to show they do not grow with size)."""

    READS = ("get_links_by_crm", "get_links_by_ms", "iter_links", "get_cursor", "latest_runs", "list_quarantine")

    def __init__(self) -> None:
        super().__init__()
        self._init_faults()

    @property
    def reads(self) -> int:
        return sum(self.calls[m] for m in self.READS)
