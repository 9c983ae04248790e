"""The task planner's decision table, branch by branch, on plain data (no I/O)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from sync_core.domain.models import (
    CrmTask,
    Link,
    LinkState,
    MsChange,
    MsTask,
    SyncMode,
    TaskFields,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.kinds.tasks.mapping import decode_synced, encode_synced
from sync_core.kinds.tasks.planner import TaskItem, TaskPlanContext, import_task_id, merge_tasks, plan_tasks
from sync_core.sync.actions import (
    ConflictMerge,
    CreateInCrm,
    CreateInMicrosoft,
    DeleteInMicrosoft,
    LinkExisting,
    MarkCrmDeleted,
    MarkMsRemoved,
    RefreshLinkVersions,
    RememberMeeting,
    Skip,
    Unlink,
    UpdateCrm,
    UpdateMicrosoft,
)
from sync_core.sync.guard import GuardLimits

BASE = TaskFields(subject="Call", body="notes", due_date=date(2026, 5, 1))
USER = "u1"


def settings(mode: SyncMode = SyncMode.TWO_WAY) -> UserSyncSettings:
    return UserSyncSettings(tenant_id="t1", user_id=USER, mode=mode, tasks_enabled=True)


def crm(crm_id: str = "c1", *, version: str = "v1", assigned: bool = True, gone: bool = False,
        **changes: Any) -> TaskItem:
    if gone:
        return TaskItem(crm_id, None)
    fields = BASE.model_copy(update=changes)
    task = CrmTask(id=crm_id, tenant_id="t1", account_id="a1", assigned_to=USER if assigned else "u2",
                   subject=fields.subject, description=fields.body, due_date=fields.due_date, due_at=fields.due_at,
                   version=version)
    return TaskItem(crm_id, task, fields, assigned)


def ms(key: str = "todo:m1", *, version: str = "k1", removed: bool = False, invalid: bool = False,
       tag: str | None = None, meeting: bool = False, **changes: Any) -> MsChange[MsTask]:
    if removed:
        return MsChange(ms_id=key, removed_reason="deleted")
    if invalid:
        return MsChange(ms_id=key, invalid_reason="start is not a date and time")
    task = MsTask(id=key.split(":", 1)[1], version=version, fields=BASE.model_copy(update=changes), crm_id=tag,
                  meeting=meeting)
    return MsChange(ms_id=key, item=task)


def link(crm_id: str = "c1", key: str | None = "todo:m1", *, state: LinkState = LinkState.LINKED,
         crm_version: str = "v1", ms_version: str = "k1", synced: TaskFields = BASE,
         synced_meeting: bool = False) -> Link:
    return Link(tenant_id="tenant-1", user_id=f"{USER}|tasks", crm_id=crm_id, ms_id=key, state=state, crm_version=crm_version,
                ms_version=ms_version, synced_hash=encode_synced(synced, synced_meeting), etag="e")


@dataclass(frozen=True)
class Case:
    name: str
    crm: list[TaskItem]
    ms: list[MsChange[MsTask]]
    links: list[Link]
    expected: type
    mode: SyncMode = SyncMode.TWO_WAY
    target: TaskTarget = TaskTarget.TO_DO


CASES = [
    # --- no link yet
    Case("new in the CRM → create", [crm()], [], [], CreateInMicrosoft),
    Case("someone else's CRM task → skip", [crm(assigned=False)], [], [], Skip),
    Case("new in the CRM, microsoft_to_crm → skip", [crm()], [], [], Skip, SyncMode.MICROSOFT_TO_CRM),
    Case("no due date, calendar → skip", [crm(due_date=None)], [], [], Skip, target=TaskTarget.CALENDAR),
    Case("dated, calendar → create", [crm()], [], [], CreateInMicrosoft, target=TaskTarget.CALENDAR),
    Case("new in Microsoft → import", [], [ms()], [], CreateInCrm),
    Case("new in Microsoft, crm_to_microsoft → skip", [], [ms()], [], Skip, SyncMode.CRM_TO_MICROSOFT),
    Case("our own item found by its tag → link", [crm()], [ms(tag="c1")], [], LinkExisting),
    Case("our own item, CRM task deleted → delete it", [crm(gone=True)], [ms(tag="c1")], [], DeleteInMicrosoft),
    Case("our own item, given to someone else → delete it", [crm(assigned=False)], [ms(tag="c1")], [],
         DeleteInMicrosoft),
    Case("deleted in the CRM before it was synced → skip", [crm(gone=True)], [], [], Skip),
    Case("removed in Microsoft before it was synced → skip", [], [ms(removed=True)], [], Skip),
    Case("malformed in Microsoft → skip (quarantined)", [], [ms(invalid=True)], [], Skip),
    # --- linked
    Case("unchanged → skip", [crm()], [ms()], [link()], Skip),
    Case("edited in the CRM → update Microsoft", [crm(version="v2", subject="Call back")], [], [link()],
         UpdateMicrosoft),
    Case("edited in the CRM, microsoft_to_crm → skip", [crm(version="v2", subject="x")], [], [link()], Skip,
         SyncMode.MICROSOFT_TO_CRM),
    Case("edited in Microsoft → update the CRM", [], [ms(version="k2", done=True)], [link()], UpdateCrm),
    Case("edited in Microsoft, crm_to_microsoft → skip", [], [ms(version="k2", done=True)], [link()], Skip,
         SyncMode.CRM_TO_MICROSOFT),
    Case("edited on both sides → conflict merge", [crm(version="v2", subject="CRM")], [ms(version="k2", body="MS")],
         [link()], ConflictMerge),
    Case("our own write echoed back → refresh versions", [crm(version="v2")], [ms(version="k2")], [link()],
         RefreshLinkVersions),
    Case("a due time To Do cannot hold never counts as changed",
         [], [ms(version="k2")], [link(synced=BASE.model_copy(update={"due_at": datetime(2026, 5, 1, 9, tzinfo=UTC)}))],
         RefreshLinkVersions),
    Case("deleted in the CRM → delete in Microsoft", [crm(gone=True)], [], [link()], DeleteInMicrosoft),
    Case("given to someone else → delete in Microsoft", [crm(version="v2", assigned=False)], [], [link()],
         DeleteInMicrosoft),
    Case("deleted in the CRM, microsoft_to_crm → the link remembers it", [crm(gone=True)], [], [link()],
         MarkCrmDeleted, SyncMode.MICROSOFT_TO_CRM),
    Case("gone on both sides → unlink", [crm(gone=True)], [ms(removed=True)], [link()], Unlink),
    Case("deleted in Microsoft → CRM keeps it, link remembers", [], [ms(removed=True)], [link()], MarkMsRemoved),
    Case("deleted in Microsoft, edited in the CRM → re-create", [crm(version="v2", subject="again")],
         [ms(removed=True)], [link()], CreateInMicrosoft),
    Case("lost its due date, calendar → delete the event", [crm(version="v2", due_date=None)], [],
         [link("c1", "calendar:m1")], DeleteInMicrosoft, target=TaskTarget.CALENDAR),
    # --- linked in the other target: a target switch moves it
    Case("in the other target → created here (the old one deleted after)", [crm()], [], [link("c1", "calendar:m1")],
         CreateInMicrosoft),
    Case("in the other target, deleted in the CRM → deleted there", [crm(gone=True)], [], [link("c1", "calendar:m1")],
         DeleteInMicrosoft),
    Case("in To Do without a day, calendar now → deleted there", [crm(due_date=None)], [], [link()],
         DeleteInMicrosoft, target=TaskTarget.CALENDAR),
    Case("in the other target, microsoft_to_crm → unlinked", [crm()], [], [link("c1", "calendar:m1")], Unlink,
         SyncMode.MICROSOFT_TO_CRM),
    Case("a meeting in the calendar, To Do now → stays there", [crm()], [],
         [link("c1", "calendar:m1", synced_meeting=True)], Skip),
    # --- meetings (events with attendees) are followed but never written
    Case("a meeting edited in Outlook → CRM updated, Outlook not written", [],
         [ms("calendar:m1", version="k2", meeting=True, subject="Moved")], [link("c1", "calendar:m1")],
         UpdateCrm, target=TaskTarget.CALENDAR),
    Case("a meeting edited in the CRM → not sent", [crm(version="v2", subject="x")], [],
         [link("c1", "calendar:m1", synced_meeting=True)], Skip, target=TaskTarget.CALENDAR),
    Case("a meeting deleted in the CRM → left in Outlook, still linked (never imported again)", [crm(gone=True)], [],
         [link("c1", "calendar:m1", synced_meeting=True)], Skip, target=TaskTarget.CALENDAR),
    Case("our import of a meeting, task deleted before its link → remembered", [crm("c9", gone=True)],
         [ms("calendar:m9", meeting=True, tag="c9")], [], RememberMeeting, target=TaskTarget.CALENDAR),
    Case("create not confirmed → wait", [crm()], [], [link(key=None, state=LinkState.PENDING_CREATE)], Skip),
    # --- removed in Microsoft earlier
    Case("removed earlier, unchanged in the CRM → not pushed back", [crm()], [],
         [link(state=LinkState.MS_REMOVED)], Skip),
    Case("removed earlier, edited in the CRM → re-create", [crm(version="v2", subject="x")], [],
         [link(state=LinkState.MS_REMOVED)], CreateInMicrosoft),
    Case("removed earlier, deleted in the CRM → unlink", [crm(gone=True)], [], [link(state=LinkState.MS_REMOVED)],
         Unlink),
    Case("removed earlier, back in Microsoft → link again", [crm()], [ms(version="k2")],
         [link(state=LinkState.MS_REMOVED)], LinkExisting),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decision_table(case: Case) -> None:
    context = TaskPlanContext(settings(case.mode), case.target)
    actions = plan_tasks(case.crm, case.ms, case.links, context)
    assert [type(a) for a in actions] == [case.expected], actions
    for action in actions:
        if getattr(action, "ms_now", None) is not None and action.ms_now.meeting:  # type: ignore[union-attr]
            assert not action.write_ms, "a meeting is never written"  # type: ignore[union-attr]


def test_an_import_gets_an_id_derived_from_the_item_so_a_replay_finds_it() -> None:
    context = TaskPlanContext(settings(), TaskTarget.CALENDAR)
    occurrence = "calendar:AAMkAGOc" + "b2NjdXJyZW5jZQ"
    (action,) = plan_tasks([], [ms(occurrence)], [], context)
    assert isinstance(action, CreateInCrm)
    assert action.crm_id == import_task_id("t1", USER, occurrence)
    # Our import whose link write was lost comes back as a CRM task with that id: linked, not imported twice.
    (again,) = plan_tasks([crm(action.crm_id)], [ms(occurrence)], [], context)
    assert isinstance(again, LinkExisting)


def test_conflicts_merge_field_by_field_and_the_crm_wins_clashes() -> None:
    shown = TaskPlanContext(settings(), TaskTarget.TO_DO).shown
    synced = decode_synced(encode_synced(BASE))
    crm_fields = BASE.model_copy(update={"subject": "CRM subject", "body": "CRM body"})
    ms_fields = BASE.model_copy(update={"body": "MS body", "done": True, "due_date": date(2026, 5, 2)})
    merged, clashes = merge_tasks(synced, crm_fields, ms_fields, shown)
    assert merged == TaskFields(subject="CRM subject", body="CRM body", due_date=date(2026, 5, 2), done=True)
    assert clashes == ("body",)


def test_the_mass_delete_guard_holds_back_deletions_beyond_the_limit() -> None:
    context = TaskPlanContext(settings(), TaskTarget.TO_DO)
    links = [link(f"c{i}", f"todo:m{i}") for i in range(40)]
    gone = [crm(f"c{i}", gone=True) for i in range(30)]
    actions = plan_tasks(gone, [], links, context, limits=GuardLimits(min_items=5, max_fraction=0.5))
    assert all(isinstance(a, Skip) and a.held for a in actions)
    fewer = plan_tasks(gone[:10], [], links, context, limits=GuardLimits(min_items=5, max_fraction=0.5))
    assert all(isinstance(a, DeleteInMicrosoft) for a in fewer)


def test_removed_earlier_deleted_in_the_crm_and_back_in_microsoft_is_deleted_there_as_for_contacts() -> None:
    # One rule for every kind (it was an unlink for tasks): the CRM delete wins over the item moved back in.
    context = TaskPlanContext(settings(), TaskTarget.TO_DO)
    removed = link(state=LinkState.MS_REMOVED)
    (action,) = plan_tasks([crm(gone=True)], [ms(version="k2")], [removed], context)
    assert isinstance(action, DeleteInMicrosoft)
    assert (action.ms_id, action.link) == ("todo:m1", removed)
    assert action.reason == "deleted in the CRM or assigned to someone else"
    # given to someone else counts as gone too
    (given,) = plan_tasks([crm(version="v2", assigned=False)], [ms(version="k2")], [removed], context)
    assert isinstance(given, DeleteInMicrosoft)
    # a meeting is never deleted: the link is just forgotten
    meeting = link("c1", "calendar:m1", state=LinkState.MS_REMOVED, synced_meeting=True)
    calendar = TaskPlanContext(settings(), TaskTarget.CALENDAR)
    (kept,) = plan_tasks([crm(gone=True)], [ms("calendar:m1", version="k2", meeting=True)], [meeting], calendar)
    assert isinstance(kept, Unlink) and kept.reason == "deleted in the CRM after it left Microsoft"
    # microsoft_to_crm never writes Microsoft: forgotten as before
    m2c = TaskPlanContext(settings(SyncMode.MICROSOFT_TO_CRM), TaskTarget.TO_DO)
    (left,) = plan_tasks([crm(gone=True)], [ms(version="k2")], [removed], m2c)
    assert isinstance(left, Unlink)


def test_crm_to_microsoft_ignores_a_microsoft_edit_but_remembers_an_echoed_crm_version() -> None:
    # One rule for every kind (tasks skipped the pair): the CRM side only echoed our write, so its new version is
    # remembered; the Microsoft edit stays ignored (its version is not taken, so it is never counted as synced).
    context = TaskPlanContext(settings(SyncMode.CRM_TO_MICROSOFT), TaskTarget.TO_DO)
    (action,) = plan_tasks([crm(version="v2")], [ms(version="k2", done=True)], [link()], context)
    assert action == RefreshLinkVersions(link(), "v2", "k1")
    (ignored,) = plan_tasks([crm()], [ms(version="k2", done=True)], [link()], context)
    assert isinstance(ignored, Skip) and ignored.reason == "crm_to_microsoft: Microsoft edits are ignored"
