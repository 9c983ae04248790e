"""What a kind supplies to the ONE planner (sync/planner.py): its rules, the words of its reasons.

The planner pairs, classifies and walks the decision table the same way for every kind; a kind says only
how its content compares to a link (contacts keep the synced values or their hash, tasks a hash per field),
how it merges, which CRM ids an unlinked Microsoft item may be ours for, whether an item is protected (a
meeting: never written or deleted), whether its target can hold a record (an event needs a day), whether a
link is in this run's target (a task target switch), and what being out of the user's scope means.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from sync_core.domain.models import Link, MsChange, SyncMode, UserSyncSettings
from sync_core.sync.actions import Side

F = TypeVar("F")
M = TypeVar("M")
C = TypeVar("C", bound="MsChange[Any]")  # the kind's change: its ms_id is the link's Microsoft key
F_co = TypeVar("F_co", covariant=True)
R_co = TypeVar("R_co", covariant=True)


class CrmSide(Protocol[F_co, R_co]):
    """The CRM side of one record in a run (record None: deleted in the CRM)."""

    @property
    def crm_id(self) -> str: ...

    @property
    def record(self) -> R_co | None: ...

    @property
    def fields(self) -> F_co | None: ...  # the record's synced fields; set whenever the record is

    @property
    def version(self) -> str: ...  # the version token of its synced content

    @property
    def in_scope(self) -> bool: ...  # the user's (an account they own, a task assigned to them)


@dataclass(frozen=True)
class MsItem(Generic[F]):
    """The Microsoft side of a change as the planner sees it (None for a removal)."""

    ms_id: str  # the key links and actions name it by
    version: str  # the version token (changeKey, ETag)
    fields: F
    protected: bool = False  # a meeting: followed, never written or deleted


@dataclass(frozen=True)
class Words:
    """The words of a kind's reasons, so every reason reads as it always did ("Outlook", "contacts")."""

    ms: str  # the Microsoft side: "Outlook" / "Microsoft"
    items: str  # the records: "contacts" / "tasks"
    ms_item: str  # one Microsoft item: "Outlook card" / "Microsoft item"
    crm_gone: str  # why a CRM record counts as gone: "deleted in the CRM" (or out of scope)
    out_of_scope: str  # a new CRM record that is not the user's
    unplaceable: str = "cannot be shown in this target"
    no_longer_placeable: str = "cannot be shown in this target any more: removed"
    stray: str = "an item of ours whose record is synced with another item"
    protected_left: str = "deleted in the CRM; a protected item is left alone"
    protected_unchanged: str = "a protected item is not changed by the sync"
    protected_stays: str = "a protected item stays where it is"
    not_moved_yet: str = "in the other target; moved when its record is next read"


class PlanRules(ABC, Generic[F, M, C]):
    """A kind's rules for one user's run. F: the kind's fields; M: what a convergence carries of the
    Microsoft side (see sync.actions.Converge); C: the kind's Microsoft change type."""

    words: Words
    # Out of scope (a task assigned to someone else) counts as gone once linked; otherwise (contacts) scope
    # only gates new pushes.
    gone_when_out_of_scope: bool = False
    # An unlinked item tagged with a CRM id that is linked to another item: skipped (tasks: ours, e.g. left in
    # the old target) rather than imported as a new record (contacts: a user's copy of a card keeps our tag).
    skip_tagged_strays: bool = False
    match_by_email: bool = False  # an import links a CRM record with the same e-mail instead (contacts)

    def __init__(self, settings: UserSyncSettings) -> None:
        self.settings = settings
        self.push = settings.mode is not SyncMode.MICROSOFT_TO_CRM  # CRM → Microsoft allowed
        self.pull = settings.mode is not SyncMode.CRM_TO_MICROSOFT  # Microsoft → CRM allowed

    @abstractmethod
    def ms_item(self, change: C) -> MsItem[F] | None:
        """The item a change carries (None: removed)."""

    @abstractmethod
    def tag(self, change: C) -> str | None:
        """The CRM id our create tagged the item with, when known."""

    @abstractmethod
    def candidates(self, change: C) -> list[str]:
        """The CRM ids an unlinked item may be ours for, in order (its tag, then our import ids)."""

    @abstractmethod
    def import_id(self, ms_id: str) -> str:
        """The id an import of this item gets in the CRM (derived from it: a repeated import finds it)."""

    @abstractmethod
    def same_content(self, fields: F, link: Link, side: Side) -> bool:
        """Whether `fields` (as read on `side`) are the content the link remembers."""

    @abstractmethod
    def merge(self, link: Link | None, crm: F, ms: F) -> tuple[F, tuple[str, ...]]:
        """Field-by-field merge against the link's base (None: no base, the CRM wins, Microsoft fills
        blanks); the fields changed on both sides are returned as clashes (the CRM's value kept)."""

    @abstractmethod
    def crm_update(self, link: Link, crm: F | None, ms: F) -> F:
        """What the CRM should hold after an edit in Microsoft only."""

    @abstractmethod
    def ms_now(self, change: C | None, link: Link | None, crm: F | None) -> M:
        """What a convergence carries of the Microsoft side (see Converge.ms_now)."""

    def removal_link(self, crm_id: str, ms_id: str, crm_version: str, fields: F) -> Link | None:
        """A new link that remembers the removal in Microsoft of our own import whose link write was lost
        (None: the kind does not remember it; its candidates() never pair a removed item)."""
        return None

    def unchanged_crm_fields(self, link: Link) -> F | None:
        """The CRM content of a linked record not read in this run (None: unknown, the executor reads it)."""
        return None

    def protected(self, item: MsItem[F] | None, link: Link | None) -> bool:
        return item is not None and item.protected

    def placeable(self, fields: F) -> bool:
        """Whether the run's target can hold the record at all."""
        return True

    def in_target(self, link: Link) -> bool:
        """Whether the link's item is in this run's target (False: moved by the move table)."""
        return True

    def moved_reason(self) -> str:
        return "moved"
