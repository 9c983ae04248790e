"""The decision table, branch by branch, in every sync mode, on plain data."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from sync_core.domain.models import (
    Address,
    ContactFields,
    CrmContact,
    Link,
    LinkState,
    MsChange,
    MsContact,
    SyncMode,
    UserSyncSettings,
)
from sync_core.kinds.contacts.planner import CrmItem, import_crm_id, merge_three, merge_two, plan
from sync_core.sync.actions import (
    ConflictMerge,
    CreateInCrm,
    CreateInMicrosoft,
    DeleteInMicrosoft,
    ForgetLink,
    LinkExisting,
    MarkCrmDeleted,
    MarkMsRemoved,
    RefreshLinkVersions,
    Side,
    Skip,
    Unlink,
    UpdateCrm,
    UpdateMicrosoft,
)
from sync_core.sync.guard import DeleteGuard, GuardLimits, mass_delete_guard

TWO, C2M, M2C = SyncMode.TWO_WAY, SyncMode.CRM_TO_MICROSOFT, SyncMode.MICROSOFT_TO_CRM
BASE = ContactFields(first_name="Ada", last_name="Lovelace", emails=("ada@example.com",), job_title="Analyst",
                     company="Engines", address=Address(city="London"))
CRM_EDIT = BASE.model_copy(update={"job_title": "Programmer"})
MS_EDIT = BASE.model_copy(update={"mobile_phone": "+44 7700 900000"})
MS_SAME_FIELD = BASE.model_copy(update={"job_title": "Countess"})


def settings(mode: SyncMode) -> UserSyncSettings:
    return UserSyncSettings(tenant_id="t", user_id="u", mode=mode)


def crm(version: str = "v1", fields: ContactFields = BASE, *, crm_id: str = "c1", deleted: bool = False,
        in_scope: bool = True) -> CrmItem:
    if deleted:
        return CrmItem(crm_id, None)
    contact = CrmContact(id=crm_id, tenant_id="t", account_id="a1", version=version)
    return CrmItem(crm_id, contact, fields, in_scope)


def ms(change_key: str = "k1", fields: ContactFields = BASE, *, ms_id: str = "m1", removed: bool = False) -> MsChange:
    if removed:
        return MsChange(ms_id=ms_id, removed_reason="deleted")
    return MsChange(ms_id=ms_id, item=MsContact(id=ms_id, version=change_key, fields=fields))


def link(state: LinkState = LinkState.LINKED, *, ms_id: str | None = "m1") -> Link:
    return Link(tenant_id="tenant-1", user_id="u", crm_id="c1", ms_id=ms_id, state=state, crm_version="v1", ms_version="k1",
                synced=BASE, synced_hash=BASE.content_hash())


@dataclass
class Row:
    name: str
    crm: CrmItem | None
    ms: MsChange | None
    link: Link | None
    expect: dict[SyncMode, type]
    check: dict[str, Any] = field(default_factory=dict)  # attributes every mode's action must have


ALL = (TWO, C2M, M2C)


def every(kind: type) -> dict[SyncMode, type]:
    return {mode: kind for mode in ALL}


IMPORTED = import_crm_id("t", "u", "m9")
LINKED, REMOVED, PENDING = LinkState.LINKED, LinkState.MS_REMOVED, LinkState.PENDING_CREATE
CRM_DELETED = LinkState.CRM_DELETED

ROWS = [
    # --- no link yet
    Row("new in CRM", crm(), None, None, {TWO: CreateInMicrosoft, C2M: CreateInMicrosoft, M2C: Skip}),
    Row("new in CRM, outside the user's accounts", crm(in_scope=False), None, None, every(Skip)),
    Row("deleted in CRM before ever synced", crm(deleted=True), None, None, every(Skip)),
    Row("new (or moved in) in Outlook", None, ms(ms_id="m9"), None,
        {TWO: CreateInCrm, C2M: Skip, M2C: CreateInCrm}, {}),
    Row("removed in Outlook before ever synced", None, ms(removed=True), None, every(Skip)),
    Row("our own import found again (lost link write)", crm(crm_id=IMPORTED), ms(ms_id="m9", fields=MS_EDIT), None,
        every(LinkExisting)),
    Row("our own import found again, since removed in Outlook", crm(crm_id=IMPORTED), ms(ms_id="m9", removed=True),
        None, every(MarkMsRemoved)),
    Row("our own import deleted in CRM before its link was saved", crm(crm_id=IMPORTED, deleted=True),
        ms(ms_id="m9"), None, {TWO: DeleteInMicrosoft, C2M: DeleteInMicrosoft, M2C: Skip}),
    # --- linked
    Row("unchanged on both sides (echo of our own writes)", crm(), ms(), link(), every(Skip)),
    Row("same version, other content: not a change", crm(fields=CRM_EDIT), ms(fields=MS_EDIT), link(), every(Skip)),
    Row("edited in CRM only", crm("v2", CRM_EDIT), None, link(),
        {TWO: UpdateMicrosoft, C2M: UpdateMicrosoft, M2C: Skip}),
    Row("edited in CRM, Outlook echo in the same round", crm("v2", CRM_EDIT), ms(), link(),
        {TWO: UpdateMicrosoft, C2M: UpdateMicrosoft, M2C: Skip}),
    Row("account renamed: the contact's company changed with the account's version",
        CrmItem("c1", CrmContact(id="c1", tenant_id="t", account_id="a1", version="v1"),
                BASE.model_copy(update={"company": "Engines Holdings"}), account_version="a2"), None,
        link(), {TWO: UpdateMicrosoft, C2M: UpdateMicrosoft, M2C: Skip}),
    Row("CRM version moved, content the same", crm("v2"), None, link(), every(RefreshLinkVersions),
        {"crm_version": "v2", "ms_version": "k1"}),
    Row("edited in Outlook only", None, ms("k2", MS_EDIT), link(), {TWO: UpdateCrm, C2M: Skip, M2C: UpdateCrm}),
    Row("Outlook changeKey moved, content the same", None, ms("k2"), link(), every(RefreshLinkVersions),
        {"crm_version": "v1", "ms_version": "k2"}),
    Row("CRM version moved (same content), Outlook edited", crm("v2"), ms("k2", MS_EDIT), link(),
        {TWO: UpdateCrm, C2M: RefreshLinkVersions, M2C: UpdateCrm}),
    Row("Outlook without a changeKey, content the same", None, ms(""), link(), every(RefreshLinkVersions)),
    Row("edited on both sides, different fields", crm("v2", CRM_EDIT), ms("k2", MS_EDIT), link(),
        {TWO: ConflictMerge, C2M: UpdateMicrosoft, M2C: ConflictMerge}),
    Row("edited on both sides, the same field", crm("v2", CRM_EDIT), ms("k2", MS_SAME_FIELD), link(),
        {TWO: ConflictMerge, C2M: UpdateMicrosoft, M2C: ConflictMerge}),
    Row("deleted in CRM", crm(deleted=True), None, link(),
        {TWO: DeleteInMicrosoft, C2M: DeleteInMicrosoft, M2C: MarkCrmDeleted}),
    Row("deleted in CRM, edited in Outlook (CRM wins)", crm(deleted=True), ms("k2", MS_EDIT), link(),
        {TWO: DeleteInMicrosoft, C2M: DeleteInMicrosoft, M2C: MarkCrmDeleted}),
    Row("deleted on both sides", crm(deleted=True), ms(removed=True), link(), every(Unlink)),
    Row("deleted or moved out in Outlook", None, ms(removed=True), link(), every(MarkMsRemoved)),
    Row("removed in Outlook, CRM version moved only", crm("v2"), ms(removed=True), link(), every(MarkMsRemoved)),
    Row("deleted in Outlook, edited in CRM → pushed back", crm("v2", CRM_EDIT), ms(removed=True), link(),
        {TWO: CreateInMicrosoft, C2M: CreateInMicrosoft, M2C: MarkMsRemoved}),
    # --- the link remembers a removal in Outlook
    Row("left Outlook, not edited since", crm(), None, link(REMOVED), every(Skip)),
    Row("left Outlook, then edited in CRM → pushed back", crm("v2", CRM_EDIT), None, link(REMOVED),
        {TWO: CreateInMicrosoft, C2M: CreateInMicrosoft, M2C: Skip}),
    Row("left Outlook, CRM version moved only", crm("v2"), None, link(REMOVED), every(RefreshLinkVersions)),
    Row("left Outlook, then deleted in CRM", crm(deleted=True), None, link(REMOVED), every(Unlink)),
    Row("moved back into the folder", None, ms("k2", MS_EDIT), link(REMOVED), every(LinkExisting)),
    Row("moved back into the folder after its CRM record was deleted", crm(deleted=True), ms("k2"), link(REMOVED),
        {TWO: DeleteInMicrosoft, C2M: DeleteInMicrosoft, M2C: Unlink}),
    Row("removed again", None, ms(removed=True), link(REMOVED), every(Skip)),
    # --- the link remembers a CRM delete (microsoft_to_crm left Outlook alone)
    Row("deleted in CRM earlier, its card unchanged (a full round)", None, ms("k1"), link(CRM_DELETED), every(Skip)),
    Row("deleted in CRM earlier, its card's version moved only", None, ms("k2"), link(CRM_DELETED), every(Skip)),
    Row("deleted in CRM earlier, its card removed too", None, ms(removed=True), link(CRM_DELETED), every(ForgetLink)),
    Row("deleted in CRM earlier, the delete seen again", crm(deleted=True), None, link(CRM_DELETED), every(Skip)),
    # --- an Outlook create whose outcome is unknown
    Row("pending create", crm("v2", CRM_EDIT), None, link(PENDING, ms_id=None), every(Skip)),
    # --- malformed in Outlook
    Row("malformed Outlook item", None, MsChange(ms_id="m1", invalid_reason="item has no id"), link(), every(Skip),
        {"origin": Side.MICROSOFT}),
]


@pytest.mark.parametrize("mode", ALL, ids=str)
@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_decision_table(row: Row, mode: SyncMode) -> None:
    actions = plan([row.crm] if row.crm else [], [row.ms] if row.ms else [], [row.link] if row.link else [],
                   settings(mode))
    assert len(actions) == 1, actions
    action = actions[0]
    assert type(action) is row.expect[mode], (row.name, mode, action)
    for name, value in row.check.items():
        assert getattr(action, name) == value


@pytest.mark.parametrize("mode", ALL, ids=str)
def test_a_card_whose_crm_record_was_deleted_is_imported_again_only_when_edited(mode: SyncMode) -> None:
    actions = plan([], [ms("k2", MS_EDIT)], [link(CRM_DELETED)], settings(mode))
    if mode is C2M:
        assert [type(a) for a in actions] == [Skip]  # Outlook edits are not imported in crm_to_microsoft
        return
    forget, create = actions
    assert isinstance(forget, ForgetLink) and isinstance(create, CreateInCrm)
    assert create.ms_id == "m1" and create.fields == MS_EDIT


def only(mode: SyncMode, crm_item: CrmItem | None, ms_change: MsChange | None, lk: Link | None) -> Any:
    (action,) = plan([crm_item] if crm_item else [], [ms_change] if ms_change else [], [lk] if lk else [],
                     settings(mode))
    return action


def test_crm_edit_pushes_the_crm_content_to_the_linked_item() -> None:
    action = only(TWO, crm("v2", CRM_EDIT), None, link())
    assert isinstance(action, UpdateMicrosoft)
    assert (action.ms_id, action.fields, action.ms_now, action.ms_version) == ("m1", CRM_EDIT, BASE, "k1")


def test_outlook_edit_merges_against_the_base_so_crm_only_differences_stay() -> None:
    crm_fields = BASE.model_copy(update={"notes": "kept in the CRM"})
    lk = link().model_copy(update={"synced": BASE, "synced_hash": BASE.content_hash()})
    action = only(TWO, crm("v1", crm_fields), ms("k2", MS_EDIT), lk)  # CRM version unchanged: not a CRM edit
    assert isinstance(action, UpdateCrm)
    assert action.fields.mobile_phone == MS_EDIT.mobile_phone
    assert action.write_ms is True
    assert only(M2C, crm("v1"), ms("k2", MS_EDIT), lk).write_ms is False


def test_conflict_merges_field_by_field_and_the_crm_wins_a_field_both_changed() -> None:
    both = MS_SAME_FIELD.model_copy(update={"mobile_phone": "+44 1"})
    action = only(TWO, crm("v2", CRM_EDIT), ms("k2", both), link())
    assert isinstance(action, ConflictMerge)
    assert action.fields.job_title == "Programmer"  # both changed it: CRM wins
    assert action.fields.mobile_phone == "+44 1"  # only Outlook changed it: taken
    assert action.clashes == ("job_title",)
    different = only(TWO, crm("v2", CRM_EDIT), ms("k2", MS_EDIT), link())
    assert different.clashes == () and different.fields == CRM_EDIT.model_copy(update={"mobile_phone": "+44 7700 900000"})


def test_crm_to_microsoft_overwrites_an_outlook_edit_with_the_crm_version() -> None:
    action = only(C2M, crm("v2", CRM_EDIT), ms("k2", MS_EDIT), link())
    assert isinstance(action, UpdateMicrosoft) and action.fields == CRM_EDIT


def test_import_carries_the_derived_id_and_email_matching() -> None:
    action = only(TWO, None, ms(ms_id="m9"), None)
    assert isinstance(action, CreateInCrm)
    assert action.crm_id == IMPORTED and action.match_by_email and action.sync_back
    assert only(M2C, None, ms(ms_id="m9"), None).sync_back is False
    assert import_crm_id("t", "u", "m9") != import_crm_id("t", "u2", "m9")  # per user, per item


def test_lost_import_is_linked_with_the_crm_winning_and_outlook_filling_blanks() -> None:
    crm_fields = BASE.model_copy(update={"mobile_phone": ""})
    action = only(TWO, crm(crm_id=IMPORTED, fields=crm_fields), ms(ms_id="m9", fields=MS_EDIT), None)
    assert isinstance(action, LinkExisting) and action.link is None
    assert action.fields.mobile_phone == MS_EDIT.mobile_phone
    assert only(C2M, crm(crm_id=IMPORTED, fields=crm_fields), ms(ms_id="m9", fields=MS_EDIT), None).fields == crm_fields


def test_pushing_back_after_removal_replaces_the_old_link() -> None:
    action = only(TWO, crm("v2", CRM_EDIT), None, link(REMOVED))
    assert isinstance(action, CreateInMicrosoft) and action.link == link(REMOVED) and action.fields == CRM_EDIT


def test_a_linked_outlook_change_without_its_crm_record_treats_the_crm_as_unchanged() -> None:
    action = only(TWO, None, ms("k2", MS_EDIT), link())
    assert isinstance(action, UpdateCrm) and action.record is None and action.fields == MS_EDIT


def test_units_pair_through_links_by_either_id_and_come_in_order() -> None:
    other = Link(tenant_id="tenant-1", user_id="u", crm_id="c2", ms_id="m2", crm_version="v1", ms_version="k1", synced=BASE,
                 synced_hash=BASE.content_hash())
    actions = plan([crm("v2", CRM_EDIT), crm(crm_id="c3")], [ms("k2", MS_EDIT, ms_id="m2"), ms(ms_id="m7")],
                   [link(), other], settings(TWO))
    assert [type(a) for a in actions] == [UpdateMicrosoft, CreateInMicrosoft, UpdateCrm, CreateInCrm]
    assert [getattr(a, "crm_id") for a in actions[:3]] == ["c1", "c3", "c2"]


# --- merging -------------------------------------------------------------------------------------

def test_merge_three_walks_address_fields_one_by_one() -> None:
    crm_side = BASE.model_copy(update={"address": Address(city="London", street="1 St James's Sq")})
    ms_side = BASE.model_copy(update={"address": Address(city="London", postal_code="SW1Y 4LE")})
    merged, clashes = merge_three(BASE, crm_side, ms_side)
    assert merged.address == Address(city="London", street="1 St James's Sq", postal_code="SW1Y 4LE")
    assert clashes == ()
    both = BASE.model_copy(update={"address": Address(city="Paris")})
    merged, clashes = merge_three(BASE, crm_side.model_copy(update={"address": Address(city="Rome")}), both)
    assert merged.address.city == "Rome" and clashes == ("address.city",)


def test_merge_without_base_lets_the_crm_win_and_fills_blanks() -> None:
    merged = merge_two(BASE.model_copy(update={"job_title": ""}), MS_SAME_FIELD.model_copy(update={"first_name": "X"}))
    assert merged.first_name == "Ada" and merged.job_title == "Countess"
    assert merge_three(None, BASE, MS_EDIT) == (merge_two(BASE, MS_EDIT), ())


# --- the mass-delete guard ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("crm_deletes", "ms_removals", "links", "blocked"),
    [
        (20, 0, 20, (False, False)),  # at the floor: allowed
        (21, 0, 100, (False, False)),  # over the floor, not over half
        (51, 0, 100, (True, False)),  # over half of the links
        (0, 51, 100, (False, True)),
        (21, 21, 30, (True, True)),  # a small user: the floor of 20 decides
        (500, 0, 2000, (False, False)),
    ],
)
def test_guard_thresholds(crm_deletes: int, ms_removals: int, links: int, blocked: tuple[bool, bool]) -> None:
    guard = mass_delete_guard(crm_deletes, ms_removals, links, GuardLimits())
    assert (guard.crm_reason is not None, guard.ms_reason is not None) == blocked


def test_guard_is_configurable_and_only_needs_a_count_over_the_floor() -> None:
    assert mass_delete_guard(5, 5, None, GuardLimits()) == DeleteGuard()
    with pytest.raises(ValueError):
        mass_delete_guard(25, 0, None, GuardLimits())
    assert mass_delete_guard(25, 0, 10, GuardLimits(enabled=False)) == DeleteGuard()
    assert mass_delete_guard(6, 0, 10, GuardLimits(min_items=5, max_fraction=0.5)).crm_reason is not None


def _linked(i: int) -> Link:
    return Link(tenant_id="tenant-1", user_id="u", crm_id=f"c{i}", ms_id=f"m{i}", crm_version="v1", ms_version="k1", synced=BASE,
                synced_hash=BASE.content_hash())


def test_plan_holds_back_a_mass_delete_from_the_crm_with_the_reason() -> None:
    links = [_linked(i) for i in range(30)]
    actions = plan([crm(crm_id=f"c{i}", deleted=True) for i in range(25)], [], links, settings(TWO))
    assert all(isinstance(a, Skip) and a.held and a.origin is Side.CRM for a in actions)
    assert "mass-delete guard" in actions[0].reason and "25 deletions" in actions[0].reason
    # The same deletions against a user with many links go through.
    allowed = plan([crm(crm_id=f"c{i}", deleted=True) for i in range(25)], [], links, settings(TWO), link_count=100)
    assert all(isinstance(a, DeleteInMicrosoft) for a in allowed)


def test_plan_holds_back_mass_removals_from_outlook_but_not_other_actions() -> None:
    links = [_linked(i) for i in range(30)]
    changes = [ms(ms_id=f"m{i}", removed=True) for i in range(25)] + [ms("k2", MS_EDIT, ms_id="m29")]
    actions = plan([], changes, links, settings(TWO))
    assert sum(isinstance(a, Skip) and a.held and a.origin is Side.MICROSOFT for a in actions) == 25
    assert isinstance(actions[-1], UpdateCrm)


def test_a_run_wide_guard_verdict_applies_to_each_chunk() -> None:
    verdict = DeleteGuard(crm_reason="mass-delete guard: held")
    (action,) = plan([crm(deleted=True)], [], [link()], settings(TWO), guard=verdict)
    assert action == Skip("c1", "mass-delete guard: held", Side.CRM, held=True)
