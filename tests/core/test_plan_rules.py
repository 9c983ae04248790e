"""The ONE planner (sync_core.sync.planner) driven by a third, made-up kind: each hook a kind supplies
(sync_core.sync.kind.PlanRules) is shown to steer the decision, so a new kind needs only its rules.

Notes: the CRM holds a text per record, Microsoft a text per item; the link remembers the synced text in
`synced_hash`. Keys name a place ("here:n1"), so a link in another place is moved.
"""
from __future__ import annotations

from dataclasses import dataclass

from sync_core.domain.models import Link, LinkState, SyncMode, UserSyncSettings
from sync_core.sync.actions import (
    ConflictMerge,
    CreateInCrm,
    CreateInMicrosoft,
    DeleteInMicrosoft,
    LinkExisting,
    MarkMsRemoved,
    RefreshLinkVersions,
    RememberMeeting,
    Side,
    Skip,
    UpdateCrm,
    UpdateMicrosoft,
)
from sync_core.sync.kind import MsItem, PlanRules, Words
from sync_core.sync.planner import plan


@dataclass(frozen=True)
class Note:
    crm_id: str
    record: str | None  # the text in the CRM (None: deleted)
    version: str = "v1"
    in_scope: bool = True

    @property
    def fields(self) -> str | None:
        return self.record


@dataclass(frozen=True)
class NoteChange:
    ms_id: str
    text: str | None = None  # None: removed
    version: str = "k1"
    tag: str | None = None
    invalid_reason: str | None = None
    pinned: bool = False


WORDS = Words(ms="Notes", items="notes", ms_item="note", crm_gone="deleted in the CRM", out_of_scope="not the user's",
              unplaceable="empty: not shown", no_longer_placeable="emptied: removed", stray="a copy of ours",
              protected_left="pinned: left alone", protected_unchanged="pinned: not changed",
              protected_stays="pinned: stays", not_moved_yet="elsewhere: moved when read")


class NoteRules(PlanRules[str, "str | None", NoteChange]):
    words = WORDS

    def __init__(self, mode: SyncMode = SyncMode.TWO_WAY, *, place: str = "here", gone_when_out_of_scope: bool = False,
                 skip_tagged_strays: bool = False, match_by_email: bool = False) -> None:
        super().__init__(UserSyncSettings(tenant_id="t1", user_id="u1", mode=mode))
        self.place = place
        self.gone_when_out_of_scope = gone_when_out_of_scope
        self.skip_tagged_strays = skip_tagged_strays
        self.match_by_email = match_by_email

    def ms_item(self, change: NoteChange) -> MsItem[str] | None:
        return MsItem(change.ms_id, change.version, change.text, change.pinned) if change.text is not None else None

    def tag(self, change: NoteChange) -> str | None:
        return change.tag

    def candidates(self, change: NoteChange) -> list[str]:
        return [*([change.tag] if change.tag else []), self.import_id(change.ms_id)]

    def import_id(self, ms_id: str) -> str:
        return f"imported-{ms_id}"

    def same_content(self, fields: str, link: Link, side: Side) -> bool:
        return fields.strip() == link.synced_hash

    def merge(self, link: Link | None, crm: str, ms: str) -> tuple[str, tuple[str, ...]]:
        base = link.synced_hash if link is not None else None
        if base is None:
            return crm or ms, ()
        if crm == base:
            return ms, ()
        if ms == base:
            return crm, ()
        return crm, ("text",)

    def crm_update(self, link: Link, crm: str | None, ms: str) -> str:
        return ms.strip()

    def ms_now(self, change: NoteChange | None, link: Link | None, crm: str | None) -> str | None:
        return change.text if change is not None else None

    def removal_link(self, crm_id: str, ms_id: str, crm_version: str, fields: str) -> Link:
        return Link(tenant_id="t1", user_id="u1", crm_id=crm_id, ms_id=ms_id, state=LinkState.MS_REMOVED,
                    crm_version=crm_version, synced_hash=fields)

    def unchanged_crm_fields(self, link: Link) -> str | None:
        return link.synced_hash

    def placeable(self, fields: str) -> bool:
        return bool(fields)

    def in_target(self, link: Link) -> bool:
        return (link.ms_id or "").startswith(f"{self.place}:")

    def moved_reason(self) -> str:
        return f"moved to {self.place}"


def link(crm_id: str = "c1", key: str = "here:n1", text: str = "hello", **changes: object) -> Link:
    return Link(tenant_id="t1", user_id="u1", crm_id=crm_id, ms_id=key, crm_version="v1", ms_version="k1",
                synced_hash=text, **changes)  # type: ignore[arg-type]


def one(crm: list[Note], ms: list[NoteChange], links: list[Link], rules: NoteRules | None = None) -> object:
    (action,) = plan(crm, ms, links, rules or NoteRules())
    return action


def test_words_make_the_reasons() -> None:
    assert one([], [NoteChange("here:n1", invalid_reason="no body")], []) == Skip(
        "here:n1", "malformed Notes item: no body", Side.MICROSOFT)
    assert one([Note("c1", "hi")], [], [], NoteRules(SyncMode.MICROSOFT_TO_CRM)) == Skip(
        "c1", "microsoft_to_crm: CRM notes are not sent to Notes", Side.CRM)


def test_same_content_tells_an_echo_from_an_edit() -> None:
    assert one([], [NoteChange("here:n1", " hello ", "k2")], [link()]) == RefreshLinkVersions(link(), "v1", "k2")
    assert isinstance(one([], [NoteChange("here:n1", "bye", "k2")], [link()]), UpdateCrm)


def test_merge_decides_conflicts_and_crm_update_what_the_crm_gets() -> None:
    both = one([Note("c1", "crm", "v2")], [NoteChange("here:n1", "ms", "k2")], [link()])
    assert isinstance(both, ConflictMerge) and (both.fields, both.clashes) == ("crm", ("text",))
    ms_only = one([], [NoteChange("here:n1", "  edited  ", "k2")], [link()])
    # ms_now carries what Microsoft holds; the CRM side not read in the run is unchanged_crm_fields
    assert isinstance(ms_only, UpdateCrm) and (ms_only.fields, ms_only.ms_now, ms_only.record) == (
        "edited", "  edited  ", None)


def test_candidates_pair_a_lost_link_and_import_id_names_an_import() -> None:
    found = one([Note("imported-here:n1", "hi")], [NoteChange("here:n1", "")], [])
    assert isinstance(found, LinkExisting) and found.fields == "hi"  # no base: the CRM wins
    by_tag = one([Note("c7", "hi")], [NoteChange("here:n1", "hi", tag="c7")], [])
    assert isinstance(by_tag, LinkExisting) and by_tag.crm_id == "c7"
    new = one([], [NoteChange("here:n1", "hi")], [], NoteRules(match_by_email=True))
    assert new == CreateInCrm("here:n1", "k1", "hi", "imported-here:n1", sync_back=True, match_by_email=True)


def test_removal_link_remembers_our_import_removed_before_its_link_was_saved() -> None:
    action = one([Note("imported-here:n1", "hi")], [NoteChange("here:n1")], [])
    assert isinstance(action, MarkMsRemoved)
    assert (action.link.state, action.link.synced_hash, action.link.ms_id) == (LinkState.MS_REMOVED, "hi", "here:n1")


class ForgetfulNoteRules(NoteRules):
    def removal_link(self, crm_id: str, ms_id: str, crm_version: str, fields: str) -> Link | None:
        return None


def test_a_kind_that_remembers_no_removal_of_an_unlinked_item_sends_its_record() -> None:
    action = one([Note("imported-here:n1", "hi")], [NoteChange("here:n1")], [], ForgetfulNoteRules())
    assert action == CreateInMicrosoft("imported-here:n1", "hi", "v1", None, "new in the CRM")


def test_skip_tagged_strays() -> None:
    # tagged with a CRM id that is linked to another item: a copy of ours
    copy = NoteChange("here:n2", "hi", tag="c1")
    assert isinstance(one([], [copy], [link()]), CreateInCrm)
    assert one([], [copy], [link()], NoteRules(skip_tagged_strays=True)) == Skip("here:n2", "a copy of ours")


def test_a_protected_item_is_never_written_or_deleted() -> None:
    pinned = NoteChange("here:n1", "hi", "k2", pinned=True)
    assert one([Note("c1", None)], [], [link()]) == DeleteInMicrosoft("c1", "here:n1", link(), "deleted in the CRM")
    assert one([Note("c1", None)], [pinned], [link()]) == Skip("c1", "pinned: left alone")
    assert one([Note("c1", "new", "v2")], [NoteChange("here:n1", "hello", "k2", pinned=True)], [link()]) == Skip(
        "c1", "pinned: not changed", Side.CRM)
    assert one([Note("c1", None)], [NoteChange("here:n1", "hi", tag="c1", pinned=True)], []) == RememberMeeting(
        "c1", "here:n1", "k1", "hi")
    imported = one([], [pinned], [])
    assert isinstance(imported, CreateInCrm) and imported.meeting and not imported.sync_back


def test_placeable_keeps_what_the_target_cannot_hold() -> None:
    assert one([Note("c1", "")], [], []) == Skip("c1", "empty: not shown")
    assert one([Note("c1", "", "v2")], [], [link()]) == DeleteInMicrosoft("c1", "here:n1", link(), "emptied: removed")
    assert isinstance(one([Note("c1", "bye", "v2")], [], [link()]), UpdateMicrosoft)


def test_in_target_moves_a_link_in_another_place() -> None:
    elsewhere = link(key="there:n1")
    assert one([Note("c1", "hello")], [], [elsewhere]) == CreateInMicrosoft("c1", "hello", "v1", elsewhere, "moved to here")
    assert one([], [NoteChange("there:n1", "hello", "k2")], [elsewhere]) == Skip("c1", "elsewhere: moved when read")
    assert one([Note("c1", "")], [], [elsewhere]) == DeleteInMicrosoft("c1", "there:n1", elsewhere, "empty: not shown")


def test_gone_when_out_of_scope() -> None:
    theirs = Note("c1", "hello", "v2", in_scope=False)
    # scope only gates new pushes ...
    assert one([Note("c1", "hi", in_scope=False)], [], []) == Skip("c1", "not the user's")
    assert one([theirs], [], [link()]) == RefreshLinkVersions(link(), "v2", "k1")
    # ... or, for a kind that says so, a linked record out of scope counts as gone
    rules = NoteRules(gone_when_out_of_scope=True)
    assert one([theirs], [], [link()], rules) == DeleteInMicrosoft("c1", "here:n1", link(), "deleted in the CRM")
    assert one([Note("c1", "hi", in_scope=False)], [NoteChange("here:n1", "hi", tag="c1")], [], rules) == (
        DeleteInMicrosoft("c1", "here:n1", None, "deleted in the CRM"))
