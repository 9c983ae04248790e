"""The chaos run's checks must be able to fail: each rule of bench/chaos_oracle.py against a hand-made end state."""
from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest

from bench.chaos_oracle import Verdict, check_contacts, check_tasks
from bench.chaos_people import History, SimUser
from tests.support.fakes import FakeCrm
from sync_core.kinds.contacts.mapping import fields_to_graph, crm_to_fields
from sync_core.domain.models import (
    FOLDER_NAME,
    ContactScope,
    CrmContact,
    CrmTask,
    SyncMode,
    TaskTarget,
    UserSyncSettings,
)

TENANT, USER = "t1", "u1"


class _Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.status_code = 200

    def json(self) -> dict[str, Any]:
        return self.body


class FakePerson:
    """What the checks read of Microsoft 365: the folder's contacts, To Do tasks, events."""

    def __init__(self) -> None:
        self.contacts: list[dict[str, Any]] = []
        self.todo: list[dict[str, Any]] = []
        self.calendar: list[dict[str, Any]] = []

    def request(self, method: str, path: str, body: Any = None) -> _Answer:
        if path.startswith("/contactFolders"):
            return _Answer({"value": [{"id": "f1", "displayName": FOLDER_NAME}]})
        return _Answer({"value": [{"id": "l1", "displayName": FOLDER_NAME}]})

    def folder_contacts(self, folder_id: str) -> list[dict[str, Any]]:
        return self.contacts

    def todo_tasks(self) -> list[dict[str, Any]]:
        return self.todo

    def events(self) -> list[dict[str, Any]]:
        return self.calendar


def _world(mode: SyncMode = SyncMode.TWO_WAY) -> tuple[SimUser, UserSyncSettings, FakeCrm, FakePerson, str]:
    settings = UserSyncSettings(tenant_id=TENANT, user_id=USER, mode=mode)
    user = SimUser("u1", TENANT, USER, {"id": "ms1"}, settings, random.Random(1))
    crm = FakeCrm()
    account = crm.create_account(TENANT, "Acme Ltd", USER)
    return user, settings, crm, FakePerson(), account.id


def _crm(crm: FakeCrm, account_id: str, tag: str, **values: Any) -> CrmContact:
    return crm.create_contact(CrmContact(id="", tenant_id=TENANT, account_id=account_id, first_name="Ada",
                                         last_name=f"Lovelace {tag}", **values))


def _outlook_copy(contact: CrmContact, **changes: Any) -> dict[str, Any]:
    item = fields_to_graph(crm_to_fields(contact, "Acme Ltd"), None)
    return {**item, "id": f"ms-{contact.id}", "changeKey": "ck", **changes}


def _history(user: SimUser, tag: str, **values: Any) -> History:
    history = History(tag=tag, origin="crm" if tag.startswith("c") else "ms", crm_seen=True, **values)
    user.contacts[tag] = history
    return history


def _violations(user: SimUser, settings: UserSyncSettings, crm: FakeCrm, person: FakePerson) -> list[str]:
    verdict = Verdict("u1")
    check_contacts(user, settings, crm, person, verdict)  # type: ignore[arg-type]
    return verdict.violations


def test_an_agreeing_pair_passes_and_a_differing_field_fails() -> None:
    user, settings, crm, person, account = _world()
    contact = _crm(crm, account, "c1", job_title="Engineer")
    _history(user, "c1", last_crm_edit=1)
    person.contacts = [_outlook_copy(contact)]
    assert _violations(user, settings, crm, person) == []
    person.contacts = [_outlook_copy(contact, jobTitle="Countess")]
    assert _violations(user, settings, crm, person) == [
        "disagree: c1 differs in job_title (two_way) [job_title: CRM 'Engineer' / Outlook 'Countess']"]


def test_duplicates_on_either_side_fail() -> None:
    user, settings, crm, person, account = _world()
    contact = _crm(crm, account, "c1")
    _history(user, "c1", last_crm_edit=1)
    person.contacts = [_outlook_copy(contact), {**_outlook_copy(contact), "id": "other"}]
    assert "duplicate: 2 Outlook contacts in the folder with tag c1" in _violations(user, settings, crm, person)
    person.contacts = [_outlook_copy(contact)]
    _crm(crm, account, "c1")
    assert "duplicate: 2 CRM contacts with tag c1" in _violations(user, settings, crm, person)


def test_the_revoked_users_card_moved_back_in_after_the_last_run_is_excused_only_then() -> None:
    user, settings, crm, person, account = _world()
    contact = _crm(crm, account, "c1")
    history = _history(user, "c1", last_crm_edit=1, moved_in_at=1000.0)
    person.contacts = [_outlook_copy(contact), {**_outlook_copy(contact), "id": "moved-back"}]

    def verdict(last_run_start: float) -> Verdict:
        judged = Verdict("u1")
        check_contacts(user, settings, crm, person, judged, agree=False,  # type: ignore[arg-type]
                       last_run_start=last_run_start)
        return judged

    later = verdict(last_run_start=900.0)  # moved back in after the last run began: no run could see it
    assert later.violations == [] and len(later.excused) == 1
    earlier = verdict(last_run_start=1100.0)  # a run saw it and still left two
    assert earlier.violations == ["duplicate: 2 Outlook contacts in the folder with tag c1"] and not earlier.excused
    history.moved_in_at = 0.0
    assert verdict(last_run_start=900.0).violations


def test_a_lost_crm_record_and_a_leftover_outlook_item_fail() -> None:
    user, settings, crm, person, account = _world()
    kept = _crm(crm, account, "c2")
    person.contacts = [_outlook_copy(kept)]
    _history(user, "c2", last_crm_edit=2)
    _history(user, "c1", last_crm_edit=1, crm_id="gone")  # seen in the CRM, never deleted there
    assert any(v.startswith("lost: CRM contact c1") for v in _violations(user, settings, crm, person))
    user.contacts["c1"].crm_deleted = 3  # deleted in the CRM: not lost, but its Outlook copy must go
    deleted = CrmContact(id="gone", tenant_id=TENANT, account_id=account, first_name="Ada", last_name="Lovelace c1")
    person.contacts.append(_outlook_copy(deleted))
    assert _violations(user, settings, crm, person) == [
        "must go: c1 was deleted in the CRM but is still in Outlook (two_way)"]


@pytest.mark.parametrize(("removed", "edited", "ok"), [(0, 5, False), (6, 5, True), (4, 5, False)])
def test_a_crm_record_missing_in_outlook_is_allowed_only_after_an_outlook_removal(removed: int, edited: int,
                                                                                ok: bool) -> None:
    user, settings, crm, person, account = _world()
    _crm(crm, account, "c1")
    _history(user, "c1", last_crm_edit=edited, last_ms_removal=removed)
    violations = _violations(user, settings, crm, person)
    assert (violations == []) is ok, violations


def test_out_of_scope_records_may_be_missing_unless_the_scope_is_the_tenant() -> None:
    user, settings, crm, person, _ = _world()
    foreign = crm.create_account(TENANT, "Umbrella plc", "someone-else")
    _crm(crm, foreign.id, "c1")
    _history(user, "c1", last_crm_edit=1)
    assert _violations(user, settings, crm, person) == []
    tenant_wide = settings.model_copy(update={"contact_scope": ContactScope.TENANT})
    assert _violations(user, tenant_wide, crm, person) == [
        "missing in Outlook: c1 (two_way, in scope, never removed in Outlook)"]


def test_crm_to_microsoft_ignores_outlook_edits_until_the_crm_writes_again() -> None:
    user, settings, crm, person, account = _world(SyncMode.CRM_TO_MICROSOFT)
    contact = _crm(crm, account, "c1", job_title="Engineer")
    history = _history(user, "c1", last_crm_edit=1, last_ms_edit=2)
    person.contacts = [_outlook_copy(contact, jobTitle="Outlook edit"),
                       {"id": "m-item", "givenName": "Grace", "surname": "Hopper m1", "changeKey": "k"}]
    user.contacts["m1"] = History(tag="m1", origin="ms", last_ms_edit=3)
    assert _violations(user, settings, crm, person) == []  # ignored edit, unimported Outlook contact
    history.last_crm_edit = 4
    assert _violations(user, settings, crm, person) == [
        "disagree: c1 differs in job_title (crm_to_microsoft) [job_title: CRM 'Engineer' / Outlook 'Outlook edit']"]


def test_microsoft_to_crm_never_pushes_crm_contacts() -> None:
    user, settings, crm, person, account = _world(SyncMode.MICROSOFT_TO_CRM)
    contact = _crm(crm, account, "c1")
    _history(user, "c1", last_crm_edit=1)
    assert _violations(user, settings, crm, person) == []
    person.contacts = [_outlook_copy(contact)]
    assert "pushed: CRM contact c1 is in Outlook although the mode is microsoft_to_crm" in \
        _violations(user, settings, crm, person)


def test_tasks_disagreeing_missing_and_left_in_the_old_target_fail() -> None:
    settings = UserSyncSettings(tenant_id=TENANT, user_id=USER, tasks_enabled=True, task_target=TaskTarget.TO_DO)
    user = SimUser("u1", TENANT, USER, {"id": "ms1"}, settings, random.Random(1))
    crm = FakeCrm()
    account = crm.create_account(TENANT, "Acme Ltd", USER)
    task = crm.create_task(CrmTask(id="", tenant_id=TENANT, account_id=account.id, assigned_to=USER,
                                   subject="Call c1", due_date=date(2026, 2, 28)))
    user.tasks["c1"] = History(tag="c1", origin="crm", crm_seen=True, last_crm_edit=1)
    person = FakePerson()

    def verdict(old: tuple[TaskTarget, ...] = ()) -> list[str]:
        result = Verdict("u1")
        check_tasks(user, settings, crm, person, result, old_targets=old)  # type: ignore[arg-type]
        return result.violations

    assert verdict() == ["missing in todo: task c1"]
    person.todo = [{"id": "x", "title": "Call c1", "status": "notStarted", "@odata.etag": "e",
                    "dueDateTime": {"dateTime": "2026-02-28T00:00:00", "timeZone": "UTC"}}]
    assert verdict() == []
    person.todo[0]["title"] = "Call c1 later"
    assert verdict() == ["disagree: task c1 differs in subject"]
    person.todo[0]["title"] = task.subject
    person.calendar = [{"id": "e", "subject": "Call c1", "start": {"dateTime": "2026-02-28T00:00:00",
                                                                     "timeZone": "UTC"}, "isAllDay": True}]
    assert verdict((TaskTarget.CALENDAR,)) == ["must go: task c1 is still in the old target calendar"]
