"""The checks of a settled chaos run, per user: both sides read fresh and judged against the replication rules,
the user's final settings and what the people did (chaos_people.History), never against the sync's own links.

Replication rules (README, issue 4/5): a CRM create/edit/delete reaches Microsoft 365 (not in microsoft_to_crm);
an Outlook create/edit reaches the CRM (not in crm_to_microsoft); an Outlook delete or move out of the folder
never deletes CRM data, and the item is not pushed back until the CRM record is edited again.

Timing is unknown to the checks (which sync saw which action), so each rule is stated so that it holds for
every interleaving the people's actions allow, e.g. a contact removed in Outlook may be absent or re-created
when the CRM edited it before the removal, but must be present when the CRM edited it after.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from bench.chaos_people import GraphPerson, History, SimUser, tag_of, task_tag_of
from sync_core.kinds.contacts.accounts import normalise_company
from sync_core.adapters.tables.crm import TableCrm
from sync_core.domain.errors import InvalidRecordError
from sync_core.kinds.contacts.mapping import company_for_account, crm_to_fields, graph_to_contact
from sync_core.domain.models import (
    FOLDER_NAME,
    ContactFields,
    ContactScope,
    SyncMode,
    TaskTarget,
    UserSyncSettings,
)
from sync_core.kinds.tasks.mapping import crm_to_task_fields, graph_to_task, project


@dataclass
class Verdict:
    user: str
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    excused: list[str] = field(default_factory=list)  # what no run could have fixed, and why

    def fail(self, message: str) -> None:
        self.violations.append(message)


def _differences(a: ContactFields, b: ContactFields, *, company_loose: bool = False) -> list[str]:
    left, right = a.model_dump(), b.model_dump()
    names = []
    for name in left:
        if name == "company" and company_loose:
            # Outlook is not written in this mode: its company may be any spelling of the account's name, and
            # "From Office 365" stands for a blank company.
            if normalise_company(company_for_account(left[name])) != normalise_company(company_for_account(right[name])):
                names.append(name)
        elif left[name] != right[name]:
            names.append(name)
    return names


def _dups(kind: str, tags: Iterable[str], verdict: Verdict) -> None:
    for tag, count in Counter(tags).items():
        if count > 1:
            verdict.fail(f"duplicate: {count} {kind} with tag {tag}")


def check_contacts(user: SimUser, settings: UserSyncSettings, crm: TableCrm, person: GraphPerson,
                   verdict: Verdict, *, agree: bool = True, last_run_start: float | None = None) -> None:
    """`agree` False (the revoked user): only no duplicates and no CRM record lost. A card moved back into
    the folder after the start of the user's last completed run (`last_run_start`, epoch seconds) may sit
    beside the card a run re-created: no run could see it before the sign-in was revoked."""
    contacts = crm.list_contacts(user.tenant_id, limit=100_000)
    accounts = {a.id: a for a in crm.list_accounts(user.tenant_id)}
    by_tag_crm: dict[str, Any] = {}
    crm_tags = []
    for contact in contacts:
        tag = tag_of(contact.last_name)
        if tag is None:
            verdict.fail(f"untagged CRM contact {contact.id} (made by nobody the run knows)")
            continue
        crm_tags.append(tag)
        by_tag_crm[tag] = contact
    _dups("CRM contacts", crm_tags, verdict)

    folders = person.request("GET", "/contactFolders?$top=100").json().get("value", [])
    ours = [f for f in folders if f.get("displayName") == FOLDER_NAME]
    if len(ours) > 1:
        verdict.fail(f"{len(ours)} contact folders named {FOLDER_NAME!r}")
    items = person.folder_contacts(ours[0]["id"]) if ours else []
    by_tag_ms: dict[str, Any] = {}
    ms_tags = []
    for item in items:
        tag = tag_of(str(item.get("surname") or ""))
        if tag is None:
            verdict.fail(f"untagged Outlook contact {item.get('id')}")
            continue
        ms_tags.append(tag)
        by_tag_ms[tag] = item
    if last_run_start is not None:
        for tag, count in Counter(ms_tags).items():
            history = user.contacts.get(tag)
            if count > 1 and history is not None and history.moved_in_at > last_run_start:
                verdict.excused.append(f"{count} Outlook contacts with tag {tag}: one moved back in after the "
                                       "last run that completed before the sign-in was revoked")
                ms_tags = [t for t in ms_tags if t != tag] + [tag]
    _dups("Outlook contacts in the folder", ms_tags, verdict)
    verdict.counts.update({"crm_contacts": len(contacts), "outlook_contacts": len(items)})

    # No CRM record lost: everything ever seen in the CRM and not deleted there is still there.
    for history in user.contacts.values():
        if history.crm_seen and not history.crm_deleted and history.tag not in by_tag_crm:
            verdict.fail(f"lost: CRM contact {history.tag} ({history.crm_id}) is gone, nobody deleted it in the CRM")
    if not agree:
        return

    mode, scope = settings.mode, settings.contact_scope
    push = mode is not SyncMode.MICROSOFT_TO_CRM
    for tag in sorted(set(by_tag_crm) | set(by_tag_ms) | set(user.contacts)):
        history = user.contacts.get(tag) or History(tag=tag, origin="crm" if tag.startswith("c") else "ms")
        contact, item = by_tag_crm.get(tag), by_tag_ms.get(tag)
        if history.crm_deleted:
            if item is not None and push:
                verdict.fail(f"must go: {tag} was deleted in the CRM but is still in Outlook ({mode.value})")
            reimport = mode is SyncMode.MICROSOFT_TO_CRM and history.last_ms_edit > history.crm_deleted
            if contact is not None and not reimport:
                verdict.fail(f"resurrected: {tag} was deleted in the CRM and is back in the CRM")
            if contact is None or item is None:
                continue
        if contact is not None and item is not None:
            account = accounts.get(contact.account_id)
            crm_fields = crm_to_fields(contact, account.name if account else "")
            try:
                ms_fields = graph_to_contact(item).fields
            except InvalidRecordError as exc:
                verdict.fail(f"unreadable Outlook item {tag}: {exc}")
                continue
            must_agree = {
                SyncMode.TWO_WAY: True,
                # Outlook edits are ignored until the CRM writes the contact again.
                SyncMode.CRM_TO_MICROSOFT: history.last_crm_edit > history.last_ms_edit,
                # CRM edits are not sent: only records the CRM never edited must match.
                SyncMode.MICROSOFT_TO_CRM: history.last_crm_edit == 0,
            }[mode]
            differs = _differences(crm_fields, ms_fields, company_loose=mode is SyncMode.MICROSOFT_TO_CRM)
            if must_agree and differs:
                # Made-up test data only: the values help tell which rule broke.
                shown = "; ".join(f"{n}: CRM {getattr(crm_fields, n)!r:.60} / Outlook {getattr(ms_fields, n)!r:.60}"
                                  for n in differs)
                verdict.fail(f"disagree: {tag} differs in {', '.join(differs)} ({mode.value}) [{shown}]")
            if mode is SyncMode.MICROSOFT_TO_CRM and history.origin == "crm":
                verdict.fail(f"pushed: CRM contact {tag} is in Outlook although the mode is microsoft_to_crm")
            continue
        if contact is not None:  # in the CRM only
            account = accounts.get(contact.account_id)
            in_scope = scope is ContactScope.TENANT or (account is not None and account.owner_user_id == user.user_id)
            removed_after_edit = history.last_ms_removal > history.last_crm_edit
            if push and in_scope and not removed_after_edit:
                verdict.fail(f"missing in Outlook: {tag} ({mode.value}, in scope, "
                             f"{'edited in the CRM after its removal in Outlook' if history.last_ms_removal else 'never removed in Outlook'})")
            continue
        if item is not None:  # in Outlook only
            if mode is SyncMode.CRM_TO_MICROSOFT and history.origin == "ms":
                continue  # Outlook's own contacts are not imported in this mode
            verdict.fail(f"missing in the CRM: Outlook contact {tag} ({mode.value})")


def _task_items(person: GraphPerson, target: TaskTarget) -> list[dict[str, Any]]:
    return person.todo_tasks() if target is TaskTarget.TO_DO else person.events()


def check_tasks(user: SimUser, settings: UserSyncSettings, crm: TableCrm, person: GraphPerson, verdict: Verdict,
                *, old_targets: Iterable[TaskTarget] = (), agree: bool = True) -> None:
    """Tasks of a user with task sync on, two-way (the task users of a run are), in their final target."""
    tz = ZoneInfo(settings.time_zone)
    target = settings.task_target
    tasks = crm.tasks_assigned_to(user.tenant_id, user.user_id)
    by_tag_crm = {}
    crm_tags = []
    for task in tasks:
        tag = task_tag_of(task.subject)
        if tag is None:
            verdict.fail(f"untagged CRM task {task.id}")
            continue
        crm_tags.append(tag)
        by_tag_crm[tag] = task
    _dups("CRM tasks", crm_tags, verdict)
    lists = person.request("GET", "/todo/lists").json().get("value", [])
    named = [item for item in lists if item.get("displayName") == FOLDER_NAME]
    if len(named) > 1:
        verdict.fail(f"{len(named)} To Do lists named {FOLDER_NAME!r}")
    key = "title" if target is TaskTarget.TO_DO else "subject"
    by_tag_ms: dict[str, Any] = {}
    ms_tags = []
    items = _task_items(person, target)
    for item in items:
        tag = task_tag_of(str(item.get(key) or ""))
        if tag is None:
            continue  # the user's own events, not made by the run
        ms_tags.append(tag)
        by_tag_ms[tag] = item
    _dups(f"{target.value} items", ms_tags, verdict)
    verdict.counts.update({"crm_tasks": len(tasks), f"{target.value}_items": len(items)})
    for history in user.tasks.values():
        if history.crm_seen and not history.crm_deleted and history.tag not in by_tag_crm:
            verdict.fail(f"lost: CRM task {history.tag} ({history.crm_id}) is gone, nobody deleted it in the CRM")
    if not agree:
        return
    for old in old_targets:
        old_key = "title" if old is TaskTarget.TO_DO else "subject"
        for item in _task_items(person, old):
            tag = task_tag_of(str(item.get(old_key) or ""))
            if tag is not None and tag in by_tag_crm:
                verdict.fail(f"must go: task {tag} is still in the old target {old.value}")
    for tag in sorted(set(by_tag_crm) | set(by_tag_ms)):
        history = user.tasks.get(tag) or History(tag=tag, origin="crm" if tag.startswith("c") else "ms")
        task, item = by_tag_crm.get(tag), by_tag_ms.get(tag)
        if history.crm_deleted:
            if item is not None:
                verdict.fail(f"must go: task {tag} was deleted in the CRM but is still in {target.value}")
            if task is not None:
                verdict.fail(f"resurrected: task {tag} was deleted in the CRM and is back")
            continue
        if task is not None and item is not None:
            try:
                ms_fields = graph_to_task(target, item, tz).fields
            except InvalidRecordError as exc:
                verdict.fail(f"unreadable {target.value} item {tag}: {exc}")
                continue
            crm_fields = project(crm_to_task_fields(task, tz), target)
            ms_fields = project(ms_fields, target)
            if crm_fields != ms_fields:
                names = [n for n in ("subject", "body", "due_date", "due_at", "done")
                         if getattr(crm_fields, n) != getattr(ms_fields, n)]
                verdict.fail(f"disagree: task {tag} differs in {', '.join(names)}")
            continue
        if task is not None:
            no_day = target is TaskTarget.CALENDAR and task.due_date is None and task.due_at is None
            if not no_day and not history.last_ms_removal > history.last_crm_edit:
                verdict.fail(f"missing in {target.value}: task {tag}")
            continue
        verdict.fail(f"missing in the CRM: {target.value} item {tag}")
