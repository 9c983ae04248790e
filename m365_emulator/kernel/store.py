"""Mailboxes as collections of items, each collection with its own change log.

Every Outlook resource the emulator serves (contacts in a folder; later To Do tasks in a list and events in a
calendar) lives in a `Collection`. A collection numbers its changes with a monotonically increasing `seq`:
each item remembers the seq of its latest change, and removals leave a `Tombstone` with their own seq. Delta
(delta.py) is then one rule for every resource: "what has a seq in (from, to]".

Items carry two ids, as Exchange does: an immutable id that never changes, and a regular id that changes when
the item moves to another collection. Both are addressable while current (`Mailbox.ids`); an old regular id
is not.

`Store.on_change(callback)` lets other modules (change notifications) hear every change:
`callback(user_id, resource, change_type, item_id)` with the collection's resource path
(e.g. "/users/{uid}/contactFolders/{fid}/contacts"), change_type created|updated|deleted, and the item's
immutable id. A move is "deleted" in the source collection and "created" in the destination.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from m365_emulator.kernel.core import Clock
from m365_emulator.kernel.graph import new_change_key, new_folder_id, new_item_id

log = logging.getLogger(__name__)

ChangeListener = Callable[[str, str, str, str], None]


@dataclass
class Item:
    immutable_id: str
    regular_id: str
    kind: str  # "contact", "todoTask", "event", ...
    data: dict[str, Any]  # the resource's own properties, as the module stores them
    change_key: str
    created: float
    last_modified: float
    extended: dict[str, str] = field(default_factory=dict)  # singleValueExtendedProperties: canonical id → value
    seq: int = 0  # the collection seq of this item's latest change

    def reported_id(self, immutable: bool) -> str:
        return self.immutable_id if immutable else self.regular_id


@dataclass
class Tombstone:
    seq: int
    immutable_id: str
    regular_id: str
    reason: str  # "deleted" | "changed" (moved out)
    at: float

    def reported_id(self, immutable: bool) -> str:
        return self.immutable_id if immutable else self.regular_id


@dataclass
class Collection:
    id: str
    kind: str  # "contactFolder", "todoTaskList", "calendar", ...
    resource: str  # the path change notifications match, e.g. /users/{uid}/contactFolders/{id}/contacts
    props: dict[str, Any]  # the container's own properties (displayName, parentFolderId, ...)
    created: float
    seq: int = 0
    items: dict[str, Item] = field(default_factory=dict)  # by immutable id
    tombstones: list[Tombstone] = field(default_factory=list)
    deleted: bool = False  # a deleted container keeps its log so existing delta tokens learn of the removals

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass
class Mailbox:
    user_id: str
    collections: dict[str, Collection] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # current regular and immutable ids → immutable id
    where: dict[str, str] = field(default_factory=dict)  # immutable id → collection id
    delta_epoch: int = 0  # bumped to invalidate every delta token issued so far
    extra: dict[str, Any] = field(default_factory=dict)  # small JSON-able per-module state (default folder ids)

    def live_collections(self, kind: str) -> Iterator[Collection]:
        return (c for c in self.collections.values() if c.kind == kind and not c.deleted)


class Store:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self._listeners: list[ChangeListener] = []
        self._pending: list[tuple[str, str, str, str]] = []
        self.version = 0  # bumped on every change; persistence compares it

    # ------------------------------------------------------------------------------------ listeners

    def on_change(self, callback: ChangeListener) -> Callable[[], None]:
        """Register `callback(user_id, resource, change_type, item_id)`; returns an unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _emit(self, user_id: str, resource: str, change_type: str, item_id: str) -> None:
        self._pending.append((user_id, resource, change_type, item_id))

    def _flush(self) -> None:
        """Listeners run after the change is complete and outside the lock, so they may read the store."""
        pending, self._pending = self._pending, []
        for event in pending:
            for listener in list(self._listeners):
                try:
                    listener(*event)
                except Exception:  # a broken listener must not undo or block the change itself
                    log.exception("change listener %r failed for %r", listener, event)

    def _changed(self) -> None:
        self.version += 1

    # ------------------------------------------------------------------------------------ mailboxes

    def mailbox(self, user_id: str) -> Mailbox:
        with self.lock:
            found = self.mailboxes.get(user_id)
            if found is None:
                found = self.mailboxes[user_id] = Mailbox(user_id)
                self._changed()
            return found

    def drop_mailbox(self, user_id: str) -> None:
        with self.lock:
            if self.mailboxes.pop(user_id, None) is not None:
                self._changed()

    def clear(self) -> None:
        with self.lock:
            self.mailboxes.clear()
            self._changed()

    def expire_delta_tokens(self, user_id: str) -> None:
        with self.lock:
            self.mailbox(user_id).delta_epoch += 1
            self._changed()

    # ---------------------------------------------------------------------------------- collections

    def add_collection(self, user_id: str, kind: str, props: dict[str, Any], resource: Callable[[str], str],
                       collection_id: str | None = None) -> Collection:
        """`resource(collection_id)` builds the notification resource path once the id is known."""
        with self.lock:
            box = self.mailbox(user_id)
            cid = collection_id or new_folder_id()
            coll = Collection(cid, kind, resource(cid), dict(props), self.clock.now())
            box.collections[cid] = coll
            self._changed()
            return coll

    def default_collection(self, user_id: str, key: str, kind: str, props: Callable[[], dict[str, Any]],
                           resource: Callable[[str], str]) -> str:
        """The id of the mailbox's default collection of `kind` (kept in the mailbox's `extra[key]`), created with
        `props()` when there is none or it was deleted."""
        with self.lock:
            box = self.mailbox(user_id)
            cid = box.extra.get(key)
            if cid is None or cid not in box.collections or box.collections[cid].deleted:
                cid = box.extra[key] = self.add_collection(user_id, kind, props(), resource).id
            return str(cid)

    def default_first(self, user_id: str, kind: str, default_id: str) -> list[Collection]:
        """The mailbox's live collections of `kind`: the default one, then by creation."""
        with self.lock:
            found = list(self.mailbox(user_id).live_collections(kind))
        return sorted(found, key=lambda c: (c.id != default_id, c.created, c.id))

    def collection(self, user_id: str, collection_id: str, kind: str | None = None) -> Collection | None:
        with self.lock:
            coll = self.mailbox(user_id).collections.get(collection_id)
            if coll is None or coll.deleted or (kind is not None and coll.kind != kind):
                return None
            return coll

    def update_collection(self, user_id: str, collection_id: str, props: dict[str, Any]) -> Collection:
        with self.lock:
            coll = self.mailbox(user_id).collections[collection_id]
            coll.props.update(props)
            self._changed()
            return coll

    def delete_collection(self, user_id: str, collection_id: str) -> list[Tombstone]:
        """Delete the container and every item in it. The items get tombstones in the container's log."""
        with self.lock:
            box = self.mailbox(user_id)
            coll = box.collections[collection_id]
            stones = [self._remove(box, coll, item, "deleted") for item in list(coll.items.values())]
            coll.deleted = True
            self._changed()
        self._flush()
        return stones

    # ---------------------------------------------------------------------------------------- items

    def find(self, user_id: str, any_id: str) -> tuple[Collection, Item] | None:
        """An item by its immutable id or its current regular id."""
        with self.lock:
            box = self.mailbox(user_id)
            iid = box.ids.get(any_id)
            if iid is None:
                return None
            coll = box.collections[box.where[iid]]
            return coll, coll.items[iid]

    def create_item(self, user_id: str, collection_id: str, kind: str, data: dict[str, Any],
                    extended: dict[str, str] | None = None) -> Item:
        with self.lock:
            box = self.mailbox(user_id)
            coll = box.collections[collection_id]
            now = self.clock.now()
            item = Item(new_item_id(), new_item_id(), kind, dict(data), new_change_key(), now, now,
                        dict(extended or {}), coll.next_seq())
            self._place(box, coll, item)
            self._emit(user_id, coll.resource, "created", item.immutable_id)
            self._changed()
        self._flush()
        return item

    def update_item(self, user_id: str, immutable_id: str, data: dict[str, Any],
                    extended: dict[str, str] | None = None) -> Item:
        """Replace the item's data (callers merge first) and record an update: new changeKey, new seq."""
        with self.lock:
            box = self.mailbox(user_id)
            coll = box.collections[box.where[immutable_id]]
            item = coll.items[immutable_id]
            item.data = dict(data)
            if extended is not None:
                item.extended.update(extended)
            item.change_key = new_change_key()
            item.last_modified = self.clock.now()
            item.seq = coll.next_seq()
            self._emit(user_id, coll.resource, "updated", immutable_id)
            self._changed()
        self._flush()
        return item

    def delete_item(self, user_id: str, immutable_id: str) -> Tombstone:
        with self.lock:
            box = self.mailbox(user_id)
            coll = box.collections[box.where[immutable_id]]
            stone = self._remove(box, coll, coll.items[immutable_id], "deleted")
            self._changed()
        self._flush()
        return stone

    def move_item(self, user_id: str, immutable_id: str, destination_id: str) -> Item:
        """Move to another collection: the source logs a "changed" removal, the destination a new item,
        and the regular id changes (as Exchange's ids do when an item changes folder)."""
        with self.lock:
            box = self.mailbox(user_id)
            source = box.collections[box.where[immutable_id]]
            dest = box.collections[destination_id]
            item = source.items[immutable_id]
            if source.id == dest.id:
                return item
            self._remove(box, source, item, "changed")
            item.regular_id = new_item_id()
            item.change_key = new_change_key()
            item.seq = dest.next_seq()
            self._place(box, dest, item)
            self._emit(user_id, dest.resource, "created", immutable_id)
            self._changed()
        self._flush()
        return item

    def _place(self, box: Mailbox, coll: Collection, item: Item) -> None:
        coll.items[item.immutable_id] = item
        box.ids[item.immutable_id] = item.immutable_id
        box.ids[item.regular_id] = item.immutable_id
        box.where[item.immutable_id] = coll.id

    def _remove(self, box: Mailbox, coll: Collection, item: Item, reason: str) -> Tombstone:
        del coll.items[item.immutable_id]
        box.ids.pop(item.immutable_id, None)
        box.ids.pop(item.regular_id, None)
        box.where.pop(item.immutable_id, None)
        stone = Tombstone(coll.next_seq(), item.immutable_id, item.regular_id, reason, self.clock.now())
        coll.tombstones.append(stone)
        self._emit(box.user_id, coll.resource, "deleted", item.immutable_id)
        return stone

    def prune_tombstones(self, older_than: float) -> None:
        """Tombstones no valid delta token can still need (tokens expire by age; see delta.py)."""
        with self.lock:
            for box in self.mailboxes.values():
                for coll in box.collections.values():
                    kept = [t for t in coll.tombstones if t.at >= older_than]
                    if len(kept) != len(coll.tombstones):
                        coll.tombstones = kept
                        self._changed()

    # ------------------------------------------------------------------------------------ snapshots

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {uid: _dump_mailbox(box) for uid, box in self.mailboxes.items()}

    def load(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.mailboxes = {uid: _load_mailbox(uid, raw) for uid, raw in data.items()}
            self._changed()


def _dump_mailbox(box: Mailbox) -> dict[str, Any]:
    return {
        "delta_epoch": box.delta_epoch,
        "extra": box.extra,
        "collections": [{
            "id": c.id, "kind": c.kind, "resource": c.resource, "props": c.props, "created": c.created,
            "seq": c.seq, "deleted": c.deleted,
            "items": [vars(i) for i in c.items.values()],
            "tombstones": [vars(t) for t in c.tombstones],
        } for c in box.collections.values()],
    }


def _load_mailbox(user_id: str, raw: dict[str, Any]) -> Mailbox:
    box = Mailbox(user_id, delta_epoch=raw.get("delta_epoch", 0), extra=raw.get("extra", {}))
    for rc in raw["collections"]:
        coll = Collection(rc["id"], rc["kind"], rc["resource"], rc["props"], rc["created"], rc["seq"],
                          deleted=rc.get("deleted", False))
        coll.tombstones = [Tombstone(**t) for t in rc["tombstones"]]
        box.collections[coll.id] = coll
        for ri in rc["items"]:
            item = Item(**ri)
            coll.items[item.immutable_id] = item
            box.ids[item.immutable_id] = item.immutable_id
            box.ids[item.regular_id] = item.immutable_id
            box.where[item.immutable_id] = coll.id
    return box
