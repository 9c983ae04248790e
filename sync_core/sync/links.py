"""Link and quarantine bookkeeping of a kind's executor: the links saved in this run (ETag-conditional, newest
ETag remembered), and the user's quarantine list (entries cleared when their record synced again)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError
from sync_core.domain.models import Link, LinkState, QuarantineEntry, UserSyncSettings
from sync_core.sync.actions import Side, Skip
from sync_core.ports import StateStore
from sync_core.sync.tally import Tally, record_failure

F = TypeVar("F")  # the kind's synced content (ContactFields, TaskFields)


class LinkBook(ABC, Generic[F]):
    """The run's links and quarantine list for one user and kind."""

    SERVICE: ClassVar[str]  # how the Microsoft side is named in log lines ("Outlook")
    NOUN: ClassVar[str]  # prefix of the record kind in Microsoft write reasons ("task ")
    LABEL: ClassVar[str]  # prefix of the kind's log lines ("tasks: ")

    # Set by the executor's constructor.
    settings: UserSyncSettings
    state: StateStore
    tally: Tally
    partition: str  # the state-store partition of this user's links of the kind
    now: Callable[[], datetime]
    _listed: set[tuple[str, str]]  # (side, record id) on the user's quarantine list
    _saved: dict[str, Link]  # links saved in this run, by CRM id (newest ETag)

    @property
    def tenant_id(self) -> str:
        return self.settings.tenant_id

    @abstractmethod
    def _stored(self, synced: F, meeting: bool) -> dict[str, Any]:
        """What a link stores of the synced content."""

    def _crm_name(self, crm_id: str) -> str:
        """How a CRM record is named in the user's quarantine list."""
        return crm_id

    def _skip(self, action: Skip, guard_reasons: set[str]) -> None:
        if not action.held:
            return
        self.tally.guarded = True
        if action.reason not in guard_reasons:
            guard_reasons.add(action.reason)
            self.tally.log(f"{self.LABEL}{action.reason}")
        if action.origin is Side.MICROSOFT:
            self.tally.hold_delta = True  # the removals come again with the same deltaLink
        else:
            self.state.put_quarantine(QuarantineEntry(
                tenant_id=self.tenant_id, user_id=self.settings.user_id, side=Side.CRM.value,
                record_id=self._crm_name(action.key), reason=action.reason, first_seen=self.now()))

    def quarantine_malformed(self, change: Any) -> None:
        self._fail(Side.CRM, Side.MICROSOFT, change.ms_id, f"malformed {self.SERVICE} item: {change.invalid_reason}",
                   retry=False)

    def _fresh(self, link: Link) -> Link:
        """The link as last saved in this run (its newest ETag)."""
        return self._saved.get(link.crm_id, link)

    def _linked(self, crm_id: str, ms_id: str, crm_version: str, ms_version: str, synced: F, prior: Link | None,
                *, meeting: bool = False) -> Link:
        current = self._saved.get(crm_id) or prior
        return Link(tenant_id=self.tenant_id, user_id=self.partition, crm_id=crm_id, ms_id=ms_id,
                    state=LinkState.LINKED, crm_version=crm_version, ms_version=ms_version,
                    etag=current.etag if current is not None else None, **self._stored(synced, meeting))

    def _link(self, crm_id: str, ms_id: str, crm_version: str, ms_version: str, synced: F, prior: Link | None,
              *, meeting: bool = False) -> Link | None:
        return self._save_link(self._linked(crm_id, ms_id, crm_version, ms_version, synced, prior, meeting=meeting))

    def _save_links(self, links: list[Link]) -> list[Link | None]:
        """Many links in few storage transactions; a link that met a race goes the one-by-one way."""
        if not links:
            return []
        out: list[Link | None] = []
        for link, saved in zip(links, self.state.save_links(links)):
            if isinstance(saved, Link):
                self._saved[saved.crm_id] = saved
                out.append(saved)
            elif isinstance(saved, (ConcurrencyError, AlreadyExistsError)):
                out.append(self._save_link(link))
            else:
                raise saved
        return out

    def _current_link(self, crm_id: str) -> Link | None:
        return self.state.get_links_by_crm(self.tenant_id, self.partition, [crm_id]).get(crm_id)

    def _save_link(self, link: Link) -> Link | None:
        try:
            saved = self.state.save_link(link)
        except (ConcurrencyError, AlreadyExistsError):
            # Someone (a worker whose lease ran out) wrote it meanwhile: we hold the lease, ours stands. Once.
            current = self._current_link(link.crm_id)
            try:
                saved = self.state.save_link(link.model_copy(update={"etag": current.etag if current else None}))
            except (ConcurrencyError, AlreadyExistsError) as exc:
                self._fail(Side.CRM, Side.CRM, link.crm_id, f"{self.NOUN}link not saved ({type(exc).__name__})",
                           retry=True)
                return None
        self._saved[saved.crm_id] = saved
        return saved

    def _drop_link(self, link: Link) -> None:
        current = self._fresh(link)
        try:
            self.state.delete_link(current)
        except ConcurrencyError:
            fresh = self._current_link(link.crm_id)
            if fresh is not None:
                self.state.delete_link(fresh)
        self._saved.pop(link.crm_id, None)

    def _succeeded(self, crm_id: str, ms_id: str | None) -> None:
        for side, record_id in ((Side.CRM.value, self._crm_name(crm_id)), (Side.MICROSOFT.value, ms_id)):
            if record_id is not None and (side, record_id) in self._listed:
                self.state.clear_quarantine(self.tenant_id, self.settings.user_id, side, record_id)
                self._listed.discard((side, record_id))

    def _fail(self, write_side: Side, record_side: Side, record_id: str, reason: str, *, retry: bool,
              detail: str = "") -> None:
        named = self._crm_name(record_id) if record_side is Side.CRM else record_id
        record_failure(self.state, self.tally, self.tenant_id, self.settings.user_id, write_side, record_side, named,
                       reason, retry=retry, detail=detail, now=self.now(), label=self.LABEL)
        self._listed.add((record_side.value, named))
