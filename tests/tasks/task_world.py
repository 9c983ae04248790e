"""A small world for task sync tests: fake CRM, fake Outlook contacts, fake To Do/calendar, fake state store,
wired by sync_user exactly as production wires the real adapters."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from tests.support.fakes import CALENDAR, FakeCrm, FakeMicrosoft, FakeMicrosoftTasks, FakeStateStore
from sync_core.domain.models import FOLDER_NAME, Account, CrmTask, Link, MsTask, RunRecord, TaskTarget, UserSyncSettings
from sync_core.sync.user import SyncOptions, sync_user
from sync_core.kinds.tasks.run import calendar_window, task_partition

TENANT = "tenant-1"
USER = "user-1"


class Clock:
    def __init__(self, start: datetime = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def default_user(**settings: Any) -> UserSyncSettings:
    return UserSyncSettings(tenant_id=TENANT, user_id=USER, tasks_enabled=True, time_zone="Europe/London",
                            **settings)


@dataclass
class TaskWorld:
    user: UserSyncSettings = field(default_factory=default_user)
    crm: FakeCrm = field(default_factory=FakeCrm)
    contacts: FakeMicrosoft = field(default_factory=FakeMicrosoft)
    state: FakeStateStore = field(default_factory=FakeStateStore)
    clock: Clock = field(default_factory=Clock)
    sleeps: list[float] = field(default_factory=list)
    ms: FakeMicrosoftTasks = field(init=False)
    account: Account = field(init=False)

    def __post_init__(self) -> None:
        self.ms = FakeMicrosoftTasks(self.user)
        self.account = self.crm.add_account(TENANT, "Acme Ltd", USER)

    def sync(self, options: SyncOptions = SyncOptions()) -> RunRecord:
        self.ms.settings = self.user
        return sync_user(self.user, self.crm, self.contacts, self.state, now=self.clock, sleep=self.sleeps.append,
                         options=options, tasks=self.ms)

    def configure(self, **settings: Any) -> None:
        self.user = self.user.model_copy(update=settings)

    # --- the CRM
    def task(self, assigned_to: str = USER, **values: Any) -> CrmTask:
        return self.crm.add_task(TENANT, self.account.id, assigned_to, **values)

    def crm_tasks(self) -> list[CrmTask]:
        return self.crm.tasks_of(TENANT)

    # --- Microsoft
    def todo_list(self) -> str:
        found = [i for i, name in self.ms.lists.items() if name == FOLDER_NAME]
        assert len(found) == 1, self.ms.lists
        return found[0]

    def todo_items(self) -> dict[str, MsTask]:
        return {ms_id: self.ms.task(ms_id) for ms_id in self.ms.items_in(self.todo_list())}

    def events(self) -> dict[str, MsTask]:
        return {ms_id: self.ms.task(ms_id) for ms_id in self.ms.items_in(CALENDAR)}

    def window(self) -> str:
        return calendar_window(self.clock.now, self.user)

    def links(self) -> list[Link]:
        return list(self.state.iter_links(TENANT, task_partition(USER)))

    def target_items(self) -> dict[str, MsTask]:
        return self.todo_items() if self.user.task_target is TaskTarget.TO_DO else self.events()
