"""Delta queries over any `store.Collection`: rounds, pages, state tokens, expiry.

A round covers the collection's change log between two positions. The first round ("initial") returns every
item whose latest change is at or before the position where the round began; later rounds return the items
whose latest change falls in (previous end, this round's start], once each in their latest state, plus
tombstones as `{"id", "@removed": {"reason": "deleted"|"changed"}}`. Changes made while a round is being
paged fall after its end, so the next round reports them: nothing is lost or reported half-done.

Tokens are self-contained and signed: the mailbox, the collection, the positions, the page cursor, the
`$select` of the round's first call, the issue time and the mailbox's delta epoch. The page size is not kept:
as with Graph, each request's `Prefer: odata.maxpagesize` decides it (default 10).
A token older than the retention (default 7 days by the emulator clock) or issued before
`POST /_emulator/users/{id}/expire-delta-tokens` is answered as Outlook answers a lost sync state:
410 Gone with code "SyncStateNotFound" (the code Outlook was seen to return for expired contact/event/
message delta tokens, microsoftgraph/microsoft-graph-docs#2350; Microsoft's docs spell it syncStateNotFound
for directory resources, so compare case-insensitively). A token that does not verify is 400.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from m365_emulator.kernel.graph import (
    GraphError,
    GraphRequest,
    GraphResponse,
    bad_request,
    max_page_size,
    not_found,
    wants_immutable_ids,
)
from m365_emulator.kernel.store import Collection, Item, Store, Tombstone

DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600
DEFAULT_PAGE_SIZE = 10  # Outlook's page size for delta when no odata.maxpagesize preference is sent


# The spellings Graph accepts for the delta function in a URL.
DELTA_NAMES = ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")


@dataclass(frozen=True)
class DeltaState:
    user_id: str
    collection_id: str
    since: int | None  # None: the initial round
    until: int | None  # None in a deltaLink: the next round fixes its end when it begins
    cursor: tuple[int, str] | None  # (seq, immutable id) of the last entry already returned in this round
    select: tuple[str, ...] | None
    issued: float
    epoch: int


@dataclass
class DeltaSettings:
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    default_page_size: int = DEFAULT_PAGE_SIZE


class TokenCodec:
    """Signs tokens so a garbled or forged one is told apart from an expired one."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def encode(self, state: DeltaState) -> str:
        raw = json.dumps(asdict(state), separators=(",", ":")).encode()
        sig = hmac.new(self.secret, raw, hashlib.sha256).digest()[:12]
        return _b64(raw) + "." + _b64(sig)

    def decode(self, token: str) -> DeltaState:
        try:
            raw_part, sig_part = token.split(".")
            raw = _unb64(raw_part)
            if not hmac.compare_digest(_unb64(sig_part), hmac.new(self.secret, raw, hashlib.sha256).digest()[:12]):
                raise ValueError("signature")
            fields = json.loads(raw)
            cursor = fields.get("cursor")
            select = fields.get("select")
            return DeltaState(**{**fields, "cursor": tuple(cursor) if cursor else None,
                                 "select": tuple(select) if select is not None else None})
        except (ValueError, TypeError, KeyError):
            raise bad_request("The delta or skip token is malformed or was not issued by this service.",
                              "ErrorInvalidSyncStateData") from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


Render = Callable[[Item, list[str] | None, bool], dict[str, Any]]


@dataclass
class DeltaQuery:
    """What a resource module supplies to serve one delta endpoint."""

    store: Store
    codec: TokenCodec
    settings: DeltaSettings
    user_id: str
    collection_id: str
    link: str  # absolute URL of this delta endpoint, without query
    context: str  # @odata.context of the page
    render: Render  # item → JSON, honouring $select and the id preference
    parse_select: Callable[[dict[str, str]], list[str] | None]


def run_delta(q: DeltaQuery, req: GraphRequest) -> GraphResponse:
    now = q.store.clock.now()
    immutable = wants_immutable_ids(req.headers)
    requested_size = max_page_size(req.headers)
    with q.store.lock:
        box = q.store.mailbox(q.user_id)
        coll = box.collections.get(q.collection_id)
        if coll is None:
            raise not_found()
        state = _state_for(q, req, coll, box.delta_epoch, now)
        # Like Graph, the page size is whatever this request prefers (clients resend Prefer on every page).
        page_size = requested_size or q.settings.default_page_size
        entries = _entries(coll, state, immutable)
        if state.cursor is not None:
            entries = [e for e in entries if (e.seq, e.immutable_id) > state.cursor]
        page, rest = entries[:page_size], entries[page_size:]
        select = list(state.select) if state.select is not None else None
        value = [_removed(e, immutable) if isinstance(e, Tombstone) else q.render(e, select, immutable)
                 for e in page]
        body: dict[str, Any] = {"@odata.context": q.context}
        if rest:
            last = page[-1]
            nxt = DeltaState(q.user_id, q.collection_id, state.since, state.until, (last.seq, last.immutable_id),
                             state.select, now, box.delta_epoch)
            body["@odata.nextLink"] = f"{q.link}?$skiptoken={quote(q.codec.encode(nxt), safe='')}"
        else:
            done = DeltaState(q.user_id, q.collection_id, state.until, None, None, state.select, now, box.delta_epoch)
            body["@odata.deltaLink"] = f"{q.link}?$deltatoken={quote(q.codec.encode(done), safe='')}"
        body["value"] = value
    headers = {"Preference-Applied": f"odata.maxpagesize={requested_size}"} if requested_size else {}
    return GraphResponse(200, body, headers)


def _state_for(q: DeltaQuery, req: GraphRequest, coll: Collection, epoch: int, now: float) -> DeltaState:
    token = req.query.get("$deltatoken") or req.query.get("$skiptoken")
    if token is None:
        if coll.deleted:
            raise not_found()
        select = q.parse_select(req.query)
        return DeltaState(q.user_id, q.collection_id, None, coll.seq, None,
                          tuple(select) if select is not None else None, now, epoch)
    state = q.codec.decode(token)
    if state.user_id != q.user_id or state.collection_id != q.collection_id:
        raise bad_request("The delta token was issued for another collection.", "ErrorInvalidSyncStateData")
    if state.epoch != epoch or now - state.issued > q.settings.retention_seconds:
        raise GraphError(410, "SyncStateNotFound",
                         "The sync state generation is not found. The delta token is expired and data must be "
                         "synchronized again.")
    if state.until is None:  # a deltaLink: this round ends where the collection is now
        return DeltaState(state.user_id, state.collection_id, state.since, coll.seq, None, state.select,
                          state.issued, state.epoch)
    return state


def _entries(coll: Collection, state: DeltaState, immutable: bool) -> list[Item | Tombstone]:
    until = state.until if state.until is not None else coll.seq
    if state.since is None:
        live: list[Item | Tombstone] = [i for i in coll.items.values() if i.seq <= until]
        return sorted(live, key=lambda e: (e.seq, e.immutable_id))
    since = state.since
    changed: list[Item | Tombstone] = [i for i in coll.items.values() if since < i.seq <= until]
    live_ids = {i.reported_id(immutable) for i in coll.items.values()}
    # A tombstone whose id is live again (moved out and back in, same immutable id) would contradict the item.
    changed += [t for t in coll.tombstones if since < t.seq <= until and t.reported_id(immutable) not in live_ids]
    return sorted(changed, key=lambda e: (e.seq, e.immutable_id))


def _removed(stone: Tombstone, immutable: bool) -> dict[str, Any]:
    return {"id": stone.reported_id(immutable), "@removed": {"reason": stone.reason}}
