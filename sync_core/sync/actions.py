"""What the planner decides, for every kind: one set of actions, generic over the kind's types.

F is the kind's fields type (ContactFields, TaskFields), R its CRM record (CrmContact, CrmTask) and M what a
convergence carries of the Microsoft side for the executor (contacts: the fields Outlook holds; tasks: the
item itself, or None when it is not part of the round). The executor only applies these; it decides nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeAlias, TypeVar

from sync_core.domain.models import Link

F = TypeVar("F")
R = TypeVar("R")
M = TypeVar("M")


class Side(StrEnum):
    CRM = "crm"
    MICROSOFT = "microsoft"


@dataclass(frozen=True)
class Skip:
    """Nothing is written: why (shown in the run's log); a malformed item's skip is quarantined, a held one
    retried by the next run."""

    key: str
    reason: str
    origin: Side | None = None
    held: bool = False  # held back by the mass-delete guard: to be retried by the next run


@dataclass(frozen=True)
class CreateInMicrosoft(Generic[F]):
    crm_id: str
    fields: F
    crm_version: str
    link: Link | None  # an earlier link to replace (item gone, or in the other target: deleted once created)
    reason: str


@dataclass(frozen=True)
class DeleteInMicrosoft:
    crm_id: str
    ms_id: str  # the link's Microsoft key
    link: Link | None
    reason: str


@dataclass(frozen=True)
class CreateInCrm(Generic[F]):
    ms_id: str
    ms_version: str
    fields: F
    crm_id: str  # the kind's import id: the id to create under, so a repeated import finds its record
    sync_back: bool  # Microsoft may be written (not in microsoft_to_crm, never a protected item)
    match_by_email: bool = False  # link to a CRM record with the same e-mail instead (contacts)
    meeting: bool = False  # a protected item: followed, never written or deleted by the sync


@dataclass(frozen=True)
class Converge(Generic[F, R, M]):
    """Bring both sides of a pair to `fields`: the CRM is written where it differs, Microsoft too if
    `write_ms` (only what its target holds)."""

    crm_id: str
    ms_id: str
    ms_version: str
    ms_now: M  # what Microsoft holds now, as the kind's executor needs it
    fields: F  # what both sides should hold
    record: R | None  # the CRM record now (None: the executor reads it)
    link: Link | None
    write_ms: bool


@dataclass(frozen=True)
class UpdateMicrosoft(Converge[F, R, M]):
    """Edited in the CRM only."""


@dataclass(frozen=True)
class UpdateCrm(Converge[F, R, M]):
    """Edited in Microsoft only."""


@dataclass(frozen=True)
class LinkExisting(Converge[F, R, M]):
    """Two records that are the same item get linked (our own found again, or back after a removal)."""


@dataclass(frozen=True)
class ConflictMerge(Converge[F, R, M]):
    """Edited on both sides: merged field by field; `clashes` are fields both changed (the CRM won)."""

    clashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarkMsRemoved:
    """Deleted or moved out in Microsoft: the CRM keeps the record, the link remembers the removal."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class MarkCrmDeleted:
    """Deleted in the CRM (or out of the user's scope), microsoft_to_crm: Microsoft keeps its item, the link
    remembers the delete so the item is not imported again unless it is edited in Microsoft."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class ForgetLink:
    """A link that only remembered a CRM delete (CRM_DELETED) is dropped: its item left Microsoft too, or
    was edited there and is imported again. Deletes nothing, so the mass-delete guard does not count it."""

    crm_id: str
    link: Link


@dataclass(frozen=True)
class Unlink:
    crm_id: str
    link: Link
    origin: Side
    reason: str


@dataclass(frozen=True)
class RememberMeeting(Generic[F]):
    """A protected item (a meeting) whose CRM record is gone: linked all the same, so it is never imported
    (resurrected) again, and never deleted."""

    crm_id: str
    ms_id: str
    ms_version: str
    fields: F


@dataclass(frozen=True)
class RefreshLinkVersions:
    """Versions moved but content did not (e.g. our own write echoed back): remember the new versions."""

    link: Link
    crm_version: str
    ms_version: str


Action: TypeAlias = (
    CreateInMicrosoft[F] | DeleteInMicrosoft | CreateInCrm[F] | UpdateMicrosoft[F, R, M] | UpdateCrm[F, R, M]
    | LinkExisting[F, R, M] | ConflictMerge[F, R, M] | MarkMsRemoved | MarkCrmDeleted | ForgetLink | Unlink
    | RememberMeeting[F] | RefreshLinkVersions | Skip
)


def deletion_origin(action: object) -> Side | None:
    """The side whose report causes a deletion or unlink (what the mass-delete guard counts)."""
    if isinstance(action, (DeleteInMicrosoft, MarkCrmDeleted)):
        return Side.CRM
    if isinstance(action, MarkMsRemoved):
        return Side.MICROSOFT
    if isinstance(action, Unlink):
        return action.origin
    return None
