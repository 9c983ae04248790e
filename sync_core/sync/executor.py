"""Applies a plan: the imperative shell around a kind's planner, one mechanism for every kind.

Order within a batch of actions: CRM writes first (imports, Microsoft edits merged into the CRM), then the
Microsoft writes in batches (creates, updates, deletes); every link is saved right after its own write
succeeded (ETag-conditional). Creates in Microsoft are idempotent: the intent (a PENDING_CREATE link) is saved
before the call; the kind's `resolve_pending` settles such links by our CRM id before anything is planned for
them, so a create whose outcome was lost is found again, never repeated.

A failing record never stops the run. Failures are sorted into:
- rejected (a 4xx, a malformed record): quarantined with the reason, not retried until the record changes;
- retryable (throttled beyond our bounded retries, 5xx, timeouts, lost races): counted as errors and retried
  by the next run, CRM records through the quarantine list (re-read by id), Microsoft changes by keeping the
  old deltaLink (`Tally.hold_delta`), since Graph cannot be asked for one changed item again.
Log lines name record ids, field names and status codes only: no personal data.

A kind supplies what differs (its Graph calls, what its links store, how its records are named) through the
abstract methods and class attributes of `Executor`.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, cast

from sync_core.domain.errors import ConcurrencyError, InvalidRecordError, MicrosoftError, NotFoundError, ThrottledError
from sync_core.domain.models import Link, LinkState, QuarantineEntry, UserSyncSettings
from sync_core.sync.actions import (CreateInMicrosoft, DeleteInMicrosoft, ForgetLink, MarkCrmDeleted, MarkMsRemoved,
                                    RefreshLinkVersions, Side, Skip, Unlink)
from sync_core.ports import StateStore
from sync_core.sync.links import LinkBook
from sync_core.sync.tally import Answer, EngineConfig, Tally, outcome

__all__ = ["EngineConfig", "Executor", "MsWrite", "Removal", "Tally", "outcome"]

T = TypeVar("T")
F = TypeVar("F")  # the kind's synced content (ContactFields, TaskFields)
R = TypeVar("R", bound=Answer)  # the kind's write answer
C = TypeVar("C", bound="CrmRecord")  # the kind's CRM record


class CrmRecord(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def version(self) -> str: ...
    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


@dataclass(frozen=True)
class MsWrite(Generic[F]):
    """A Microsoft update decided while converging; its link is saved once it succeeded."""

    crm_id: str
    key: str  # the link's ms_id
    graph_id: str  # the id Graph answers by
    fields: F  # what both sides hold once written
    crm_version: str
    prior: Link | None
    payload: Any  # what the kind's update call is given for it


@dataclass(frozen=True)
class Removal:
    """A Microsoft item to delete; `group` is the container it is deleted from (one call per group)."""

    crm_id: str
    key: str  # the link's ms_id
    graph_id: str
    group: str
    link: Link | None


Created = tuple[Any, Link, tuple[str, str]]  # a create action, its intent, the new item's (ms_id, version)


class Executor(LinkBook[F], Generic[F, C, R]):
    """Applies plans for one user's run; the kind supplies its Graph calls and what its links hold."""

    CRM_RECORD: ClassVar[str]  # how a CRM record is named in reasons ("CRM record")
    CRM_GONE: ClassVar[str]  # the reason when a CRM record vanished under an update
    GONE_DELETE_COUNTS: ClassVar[bool]  # whether a delete answered 404 counts as one of ours
    RESULT: ClassVar[Callable[..., Answer]]  # the kind's write answer type (R)

    def __init__(self, settings: UserSyncSettings, state: StateStore, tally: Tally, *, partition: str,
                 quarantined: Iterable[QuarantineEntry], config: EngineConfig, sleep: Callable[[float], None],
                 now: Callable[[], datetime]) -> None:
        self.settings = settings
        self.state = state
        self.tally = tally
        self.partition = partition
        self.config = config
        self.sleep = sleep
        self.now = now
        self._listed = {(q.side, q.record_id) for q in quarantined}
        self._saved = {}
        self._ms_updates: list[MsWrite[F]] = []
        self._ms_deletes: list[Removal] = []

    # --- what the kind supplies -------------------------------------------------------------------

    @abstractmethod
    def _apply_own(self, action: Any) -> None:
        """An action only this kind has (imports, converges...)."""

    @abstractmethod
    def _removal(self, action: DeleteInMicrosoft) -> Removal: ...

    @abstractmethod
    def _intent(self, action: Any, prior: Link | None) -> dict[str, Any]:
        """What a create's intent link holds besides its CRM side (`prior`: the link it replaces)."""

    @abstractmethod
    def _create_call(self) -> Callable[[list[tuple[Any, Link]]], list[R]]: ...

    @abstractmethod
    def _update_call(self) -> Callable[[list[MsWrite[F]]], list[R]]: ...

    @abstractmethod
    def _delete_call(self, group: str) -> Callable[[list[str]], list[R]]: ...

    @abstractmethod
    def _written(self, result: R) -> tuple[str, str] | None:
        """The written item's link ms_id and version, when the answer holds it."""

    def _no_answer(self, key: str, status: int, *, error: str | None = None, retry_after: float | None = None) -> R:
        """An item's answer made up when Graph gave none (the call failed as a whole, or skipped the item)."""
        return cast(R, self.RESULT(key, False, status=status, error=error, retry_after=retry_after))

    @abstractmethod
    def _crm_update(self, record: C) -> C: ...

    @abstractmethod
    def _crm_read(self, crm_id: str) -> C | None: ...

    # --- applying ---------------------------------------------------------------------------------

    def apply(self, actions: Sequence[Any]) -> None:
        creates: list[Any] = []
        guard_reasons: set[str] = set()
        for action in actions:
            if isinstance(action, Skip):
                self._skip(action, guard_reasons)
            elif isinstance(action, CreateInMicrosoft):
                creates.append(action)
            elif isinstance(action, DeleteInMicrosoft):
                self._ms_deletes.append(self._removal(action))
            elif isinstance(action, MarkMsRemoved):
                self._save_link(self._fresh(action.link).model_copy(update={"state": LinkState.MS_REMOVED}))
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, MarkCrmDeleted):
                self._save_link(self._fresh(action.link).model_copy(update={"state": LinkState.CRM_DELETED}))
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, (Unlink, ForgetLink)):
                self._drop_link(action.link)
                self._succeeded(action.crm_id, action.link.ms_id)
            elif isinstance(action, RefreshLinkVersions):
                self._save_link(self._fresh(action.link).model_copy(update={
                    "crm_version": action.crm_version, "ms_version": action.ms_version}))
            else:
                self._apply_own(action)
        self._run_creates(creates)
        updates, self._ms_updates = self._ms_updates, []
        self._run_updates(updates)
        deletes, self._ms_deletes = self._ms_deletes, []
        self._run_deletes(deletes)

    # --- CRM writes -------------------------------------------------------------------------------

    def _write_crm(self, record: C, read: C, key: str) -> C | None:
        """`record` written over `read` where it differs (counted); None when that failed (recorded)."""
        if record == read:
            return read
        written = self._update_crm(record, read, key)
        if written is not None:
            self.tally.crm["updated"] += 1
        return written

    def _update_crm(self, record: C, read: C, key: str) -> C | None:
        try:
            return self._crm_update(record)
        except ConcurrencyError:
            fresh = self._crm_read(record.id)
            # Only the version moved (no content change): write again on the fresh version, once.
            if fresh is not None and fresh.model_copy(update={"version": "", "modified_at": None}) == \
                    read.model_copy(update={"version": "", "modified_at": None}):
                try:
                    return self._crm_update(record.model_copy(update={"version": fresh.version}))
                except ConcurrencyError:
                    pass
            # Edited in the CRM meanwhile: the next run merges both edits (the Microsoft one is replayed).
            self._fail(Side.CRM, Side.MICROSOFT, key, f"{self.CRM_RECORD} changed during the run", retry=True)
        except NotFoundError:
            self._fail(Side.CRM, Side.MICROSOFT, key, self.CRM_GONE, retry=True)
        except InvalidRecordError as exc:
            self._fail(Side.CRM, Side.MICROSOFT, key, "CRM refused the update", retry=False, detail=str(exc))
        return None

    def _conflict(self, crm_id: str, clashes: Sequence[str]) -> None:
        self.tally.conflicts += 1
        named = ", ".join(clashes) if clashes else "none (different fields)"
        self.tally.log(f"{self.LABEL}conflict crm:{crm_id} edited on both sides; fields changed on both: {named}; "
                       "CRM wins those")

    # --- Microsoft writes -------------------------------------------------------------------------

    def _run_creates(self, creates: list[Any]) -> None:
        # Intents first, for a whole chunk in few storage transactions: if we die after Graph created the
        # items, the next run finds each by our CRM id.
        planned = []
        for action in creates:
            prior = self._fresh(action.link) if action.link is not None else None
            planned.append(Link(tenant_id=self.tenant_id, user_id=self.partition, crm_id=action.crm_id,
                                state=LinkState.PENDING_CREATE, crm_version=action.crm_version,
                                etag=prior.etag if prior is not None else None, **self._intent(action, prior)))
        intents = [(action, intent) for action, intent in zip(creates, self._save_links(planned)) if intent is not None]
        call = self._create_call()
        created: list[Created] = []
        for (action, intent), result in self._batched(call, intents, key=lambda pair: pair[0].crm_id):
            kind = outcome(result)
            item = self._written(result) if kind == "ok" else None
            if item is not None:
                self.tally.microsoft["created"] += 1
                created.append((action, intent, item))
                if len(created) >= self.config.write_chunk:
                    self._link_created(created)
                    created = []
            elif kind in ("ok", "unknown"):
                # May exist in Microsoft: the intent stays; the next run looks it up by our CRM id.
                self._fail(Side.MICROSOFT, Side.CRM, action.crm_id, f"create outcome unknown (HTTP {result.status})",
                           retry=True)
            else:
                # Certainly not created: put the link back as it was.
                self._undo_intent(intent, action.link)
                self._fail(Side.MICROSOFT, Side.CRM, action.crm_id, self._reason("create", result),
                           retry=kind != "rejected", detail=result.error or "")
        self._link_created(created)

    def _link_created(self, created: list[Created]) -> None:
        """Links of a chunk of confirmed creates, saved together."""
        done = self._ready(created)
        links = [self._linked(action.crm_id, ms_id, action.crm_version, version, action.fields, intent)
                 for action, intent, (ms_id, version) in done]
        for (action, _, _), saved in zip(done, self._save_links(links)):
            if saved is not None:
                self._succeeded(action.crm_id, None)

    def _ready(self, created: list[Created]) -> list[Created]:
        """The confirmed creates whose links can be saved now."""
        return created

    def _undo_intent(self, intent: Link, prior: Link | None) -> None:
        if prior is None:
            self._drop_link(intent)
        else:
            # The earlier item is gone either way: remembered as removed, pushed again when edited.
            self._save_link(prior.model_copy(update={"state": LinkState.MS_REMOVED, "etag": intent.etag}))

    def _run_updates(self, updates: list[MsWrite[F]]) -> None:
        for write, result in self._batched(self._update_call(), updates, key=lambda w: w.graph_id):
            kind = outcome(result)
            if kind == "ok":
                self.tally.microsoft["updated"] += 1
                item = self._written(result)
                version = item[1] if item is not None else ""
                if self._link(write.crm_id, write.key, write.crm_version, version, write.fields, write.prior):
                    self._succeeded(write.crm_id, write.key)
            elif kind == "gone":
                # Deleted in Microsoft meanwhile: remember the removal; the CRM edit pushes it back next run.
                if write.prior is not None:
                    self._save_link(self._fresh(write.prior).model_copy(update={"state": LinkState.MS_REMOVED}))
                self._fail(Side.MICROSOFT, Side.CRM, write.crm_id, f"{self.SERVICE} item gone during the run",
                           retry=True)
            else:
                self._update_failed(write)
                self._fail(Side.MICROSOFT, Side.CRM, write.crm_id, self._reason("update", result),
                           retry=kind != "rejected", detail=result.error or "")

    def _update_failed(self, write: MsWrite[F]) -> None:
        """A kind's bookkeeping for an update that failed (before it is recorded)."""

    def _run_deletes(self, deletes: list[Removal]) -> None:
        for removal, result in self._deleted(deletes):
            kind = outcome(result)
            if kind in ("ok", "gone"):
                if kind == "ok" and (self.GONE_DELETE_COUNTS or result.status != 404):
                    self.tally.microsoft["deleted"] += 1
                if removal.link is not None:
                    self._drop_link(removal.link)
                self._succeeded(removal.crm_id, removal.key)
            else:
                self._fail(Side.MICROSOFT, Side.CRM, removal.crm_id, self._reason("delete", result),
                           retry=kind != "rejected", detail=result.error or "")

    def _deleted(self, removals: list[Removal]) -> Iterator[tuple[Removal, R]]:
        """Each removal with its answer, deleted in batches per group."""
        groups: dict[str, list[Removal]] = {}
        for removal in removals:
            groups.setdefault(removal.group, []).append(removal)
        for group, items in groups.items():
            delete = self._delete_call(group)

            def call(chunk: list[Removal], delete: Callable[[list[str]], list[R]] = delete) -> list[R]:
                return delete([r.graph_id for r in chunk])

            yield from self._batched(call, items, key=lambda r: r.graph_id)

    def _batched(self, call: Callable[[list[T]], list[R]], items: list[T],
                 key: Callable[[T], str]) -> Iterator[tuple[T, R]]:
        """Each item with its result, one chunk at a time (so its links are saved before the next call).
        Throttled items are retried after the longest Retry-After, a bounded number of times; a call that
        fails as a whole leaves every item's outcome unknown (status 0)."""
        for start in range(0, len(items), self.config.write_chunk):
            pending = items[start:start + self.config.write_chunk]
            for round_no in range(self.config.throttle_rounds + 1):
                last = round_no == self.config.throttle_rounds
                try:
                    results = call(pending)
                except ThrottledError as exc:
                    if last:
                        for item in pending:
                            yield item, self._no_answer(key(item), 429, retry_after=exc.retry_after)
                        break
                    self._wait(exc.retry_after)
                    continue
                except MicrosoftError as exc:
                    for item in pending:
                        yield item, self._no_answer(key(item), 0, error=type(exc).__name__)
                    break
                by_key = {r.key: r for r in results}
                throttled: list[tuple[T, R]] = []
                for item in pending:
                    result = by_key.get(key(item)) or self._no_answer(key(item), 0, error="no answer")
                    if outcome(result) == "throttled" and not last:
                        throttled.append((item, result))
                    else:
                        yield item, result
                if not throttled:
                    break
                self._wait(max(r.retry_after or 1.0 for _, r in throttled))
                pending = [item for item, _ in throttled]

    def _wait(self, seconds: float) -> None:
        self.sleep(min(max(seconds, 0.0), self.config.max_wait_seconds))

    def _reason(self, verb: str, result: Answer) -> str:
        kind = outcome(result)
        if kind == "throttled":
            return f"{self.NOUN}{verb} throttled by {self.SERVICE} beyond the run's retries"
        if kind == "rejected":
            return f"{self.SERVICE} refused the {self.NOUN}{verb} (HTTP {result.status})"
        return f"{self.NOUN}{verb} failed in {self.SERVICE} (HTTP {result.status})"
