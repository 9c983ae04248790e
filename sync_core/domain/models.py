"""Domain models shared by the planner, the engine and every adapter (pydantic, immutable)."""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from enum import StrEnum
from typing import Generic, TypeVar

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FOLDER_NAME = "Really Simple Systems"
DEFAULT_IMPORT_ACCOUNT = "From Office 365"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SyncMode(StrEnum):
    TWO_WAY = "two_way"
    CRM_TO_MICROSOFT = "crm_to_microsoft"
    MICROSOFT_TO_CRM = "microsoft_to_crm"


class ContactScope(StrEnum):
    OWNED_ACCOUNTS = "owned_accounts"
    TENANT = "tenant"


class TaskTarget(StrEnum):
    TO_DO = "todo"
    CALENDAR = "calendar"


class AllDayReminder(StrEnum):
    """When an all-day item reminds, relative to its day (at `all_day_reminder_time`)."""

    OFF = "off"
    SAME_DAY = "same_day"
    DAY_BEFORE = "day_before"
    WEEK_BEFORE = "week_before"


# The reminder choices Outlook on the web offers for timed items, in minutes before the start
# (None = don't remind). Kept in this one place; anything else is refused.
TIMED_REMINDER_CHOICES: dict[int | None, str] = {
    None: "Don't remind me",
    0: "At time of event",
    5: "5 minutes before",
    15: "15 minutes before",
    30: "30 minutes before",
    60: "1 hour before",
    120: "2 hours before",
    720: "12 hours before",
    1440: "1 day before",
    10080: "1 week before",
}


class UserSyncSettings(Frozen):
    """What one CRM user chose on the settings page."""

    tenant_id: str
    user_id: str
    mode: SyncMode = SyncMode.TWO_WAY
    contact_scope: ContactScope = ContactScope.OWNED_ACCOUNTS
    tasks_enabled: bool = False
    task_target: TaskTarget = TaskTarget.TO_DO
    all_day_reminder: AllDayReminder = AllDayReminder.OFF
    all_day_reminder_time: str = Field(default="09:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    timed_reminder_minutes: int | None = 15
    task_import_account: str = Field(default=DEFAULT_IMPORT_ACCOUNT, min_length=1, max_length=255)
    time_zone: str = "UTC"  # IANA name of the user's time zone
    event_duration_minutes: int = Field(default=30, ge=5, le=24 * 60)
    calendar_window_past_days: int = Field(default=30, ge=0, le=365)
    calendar_window_future_days: int = Field(default=365, ge=1, le=730)

    @field_validator("timed_reminder_minutes")
    @classmethod
    def _outlook_choice(cls, value: int | None) -> int | None:
        if value not in TIMED_REMINDER_CHOICES:
            choices = ", ".join(TIMED_REMINDER_CHOICES.values())
            raise ValueError(f"choose one of Outlook's reminders: {choices}")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class Address(Frozen):
    street: str = ""
    city: str = ""
    state: str = ""
    postal_code: str = ""
    country: str = ""


class ContactDetails(Frozen):
    """What a CRM contact and the synced content of a contact share: the person and how to reach them."""

    first_name: str = ""
    last_name: str = ""
    emails: tuple[str, ...] = ()
    business_phone: str = ""
    mobile_phone: str = ""
    job_title: str = ""


class ContactFields(ContactDetails):
    """The synced content of a contact in one normalised shape, whichever side it came from.

    `company` is the CRM account's name (Outlook's companyName).
    """

    company: str = ""
    address: Address = Field(default_factory=Address)
    notes: str = ""

    def content_hash(self) -> str:
        """Stable over dict order; what decides whether content really changed."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


class Account(Frozen):
    id: str
    tenant_id: str
    name: str
    owner_user_id: str | None = None
    version: str = ""


class CrmContact(ContactDetails):
    """A CRM contact as the CRM stores it: it belongs to an account (not a company string)."""

    id: str
    tenant_id: str
    account_id: str
    address: Address = Field(default_factory=Address)
    notes: str = ""
    version: str = ""  # the storage ETag: changes on every write
    modified_at: datetime | None = None


class MsContact(Frozen):
    """A contact in the user's Outlook folder, parsed from Graph JSON by the mapping module."""

    id: str
    version: str  # its changeKey
    fields: ContactFields
    parent_folder_id: str | None = None


class FeedEntry(Frozen):
    """One CRM change-feed row: written in the same transaction as the record it names."""

    position: int
    kind: str  # "contact" | "account" | "task"
    record_id: str
    deleted: bool = False


class FeedPage(Frozen):
    entries: tuple[FeedEntry, ...]
    last_position: int  # the cursor to store once these entries are handled


class LinkState(StrEnum):
    PENDING_CREATE = "pending_create"  # intent recorded; the Graph create may or may not have happened
    LINKED = "linked"
    MS_REMOVED = "ms_removed"  # gone from the folder in Outlook; kept in the CRM, not pushed back until edited
    # deleted in the CRM in microsoft_to_crm, which leaves Outlook alone: its card is not imported again
    # (a replayed or full delta round shows it unchanged) until it is edited in Outlook
    CRM_DELETED = "crm_deleted"


class Link(Frozen):
    """The last-synced state of one CRM record ↔ Microsoft item pair (one per tenant and user)."""

    tenant_id: str
    user_id: str
    crm_id: str
    ms_id: str | None = None
    state: LinkState = LinkState.LINKED
    crm_version: str = ""
    ms_version: str = ""
    synced: ContactFields | None = None  # content both sides agreed on at the last sync (merge base)
    synced_hash: str = ""
    # When the intent of a create (PENDING_CREATE) was saved: a create whose answer was lost may still land
    # in Microsoft for a while, and must not be made again meanwhile.
    pending_since: datetime | None = None
    etag: str | None = None  # storage ETag of the link row, for conditional writes


class Cursor(Frozen):
    tenant_id: str
    user_id: str
    folder_id: str | None = None
    delta_link: str | None = None
    crm_position: int = 0
    # A run stopped at its budget while fanning account changes out to their contacts: "feed position|CRM id",
    # the account entries up to that position are done for their contacts up to that id (issue 10).
    fanout_after: str | None = None
    etag: str | None = None


class RunOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # finished, some records quarantined or failed
    FAILED = "failed"
    RECONNECT_NEEDED = "reconnect_needed"
    CONTINUING = "continuing"  # stopped at its time budget with work left; a continuation job is queued


class SideCounts(Frozen):
    created: int = 0
    updated: int = 0
    deleted: int = 0
    errors: int = 0


class Progress(Frozen):
    """How far a sync that runs over several invocations (issue 10) has come: records worked through and to go
    through, since the first run of the chain (a continuation adds to the run it continues)."""

    contacts_done: int = 0
    contacts_total: int = 0
    tasks_done: int = 0
    tasks_total: int = 0


class RunRecord(Frozen):
    tenant_id: str
    user_id: str
    run_id: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: RunOutcome = RunOutcome.RUNNING
    crm: SideCounts = Field(default_factory=SideCounts)  # writes done in the CRM
    microsoft: SideCounts = Field(default_factory=SideCounts)  # writes done in Microsoft 365
    conflicts: int = 0
    quarantined: int = 0
    graph_requests: int = 0
    log: tuple[str, ...] = ()  # conflicts, guards and errors, no personal data
    error: str | None = None
    lease_expires_at: datetime | None = None
    progress: Progress | None = None  # set on a run that stopped at its budget, and on the runs continuing it
    etag: str | None = None


class QuarantineEntry(Frozen):
    tenant_id: str
    user_id: str
    side: str  # "crm" | "microsoft"
    record_id: str
    reason: str
    first_seen: datetime
    attempts: int = 1


class Lease(Frozen):
    tenant_id: str
    user_id: str
    owner: str
    expires_at: datetime
    etag: str


# --- tasks (issue 5) ----------------------------------------------------------------------------------

class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"


class CrmTask(Frozen):
    """A CRM task: filed under an account, assigned to a CRM user. Due either on a day (all-day, `due_date`)
    or at an instant (timed, `due_at`, timezone-aware), or not at all; never both."""

    id: str
    tenant_id: str
    account_id: str
    assigned_to: str
    subject: str = ""
    description: str = ""
    due_date: date | None = None
    due_at: datetime | None = None
    status: TaskStatus = TaskStatus.OPEN
    version: str = ""  # the storage ETag: changes on every write
    modified_at: datetime | None = None

    @model_validator(mode="after")
    def _one_due(self) -> CrmTask:
        if self.due_date is not None and self.due_at is not None:
            raise ValueError("a task is due on a day (all-day) or at a time, not both")
        if self.due_at is not None and self.due_at.tzinfo is None:
            raise ValueError("a timed task's due time must carry its time zone")
        return self


class TaskFields(Frozen):
    """The synced content of a task in one normalised shape, whichever side it came from (task_mapping).

    `due_date` is the day the task is due in the user's time zone (for a timed task: the day of `due_at`
    there); `due_at` is a timed task's instant in UTC, None for an all-day task. Each target represents
    only some of these (To Do has no due time, the calendar no completion): see task_mapping.REPRESENTED.
    """

    subject: str = ""
    body: str = ""
    due_date: date | None = None
    due_at: datetime | None = None
    done: bool = False


class MsTask(Frozen):
    """A task as read from one target (a To Do task or a calendar event/occurrence), parsed by task_mapping.

    `crm_id` is our own tag when the item shows it (a To Do linkedResource, an event's transactionId):
    an item we created is recognised even without its link.
    """

    id: str  # the Graph id
    version: str  # To Do's @odata.etag, an event's changeKey
    fields: TaskFields
    crm_id: str | None = None
    all_day: bool = False
    series_master_id: str | None = None
    meeting: bool = False  # an event with attendees: never changed or deleted by the sync (they would be told)


# --- what a delta round reports, the same shape for every kind -----------------------------------------

I = TypeVar("I")  # the kind's Microsoft item (MsContact, MsTask)


class MsChange(Frozen, Generic[I]):
    """One item of a delta round: `item` None means removed (deleted, or moved out of the folder / window).

    An item the mapping cannot parse comes with `invalid_reason` set (and no item): it is quarantined, never
    taken for a removal. `tag`: the CRM id our create tagged it with, when the run read it (unlinked, full
    round).
    """

    ms_id: str  # the Graph id (a task run keys it by target: see kinds.tasks.planner.ms_key)
    item: I | None = None
    removed_reason: str | None = None
    invalid_reason: str | None = None
    tag: str | None = None


class DeltaResult(Frozen, Generic[I]):
    changes: tuple[MsChange[I], ...]
    delta_link: str
    full: bool  # True when this round started without a deltaLink (initial or after expiry)
