"""What the in-memory Microsoft adapters share: opaque ids, and the log of writes a delta token points into.

Graph's delta token names a point in the mailbox's history: the next round reports every item touched
since, once, in its current state. The log keeps, per item, where it was after each write (a folder or
list id, or None once deleted), so a round can tell "changed here", "moved out" and "deleted" apart.
As with Graph (and the emulator): a token not issued for this container is refused with a 400
(ErrorInvalidSyncStateData), and one older than the retention (7 days) is a lost sync state, 410
SyncStateNotFound, which the sync answers with a full round.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sync_core.domain.errors import DeltaExpiredError, MicrosoftError

DELTA_RETENTION = timedelta(days=7)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Ids:
    """Opaque, deterministic ids and version tokens (deterministic so hypothesis can replay a run)."""

    def __init__(self, salt: str) -> None:
        self._salt = salt
        self._next = 0

    def __call__(self, prefix: str = "") -> str:
        self._next += 1
        return prefix + hashlib.sha1(f"{self._salt}:{self._next}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Event:
    seq: int
    where: str | None  # the item's folder or list after this write (None: deleted)


@dataclass(frozen=True)
class _Token:
    where: str
    seq: int
    issued: datetime


class ChangeLog:
    """Every write to a mailbox's items, in order, and the delta tokens issued over it."""

    def __init__(self, ids: Ids, clock: Callable[[], datetime] = utc_now,
                 retention: timedelta = DELTA_RETENTION) -> None:
        self._ids = ids
        self._clock = clock
        self._retention = retention
        self._seq = 0
        self._history: dict[str, list[Event]] = {}
        self._tokens: dict[str, _Token] = {}

    def record(self, ms_id: str, where: str | None) -> None:
        self._seq += 1
        self._history.setdefault(ms_id, []).append(Event(self._seq, where))

    def events(self, ms_id: str) -> list[Event]:
        return self._history[ms_id]

    def created_seq(self, ms_id: str) -> int:
        """When the item first appeared (a move keeps the id, and so this)."""
        return self._history[ms_id][0].seq

    def issue(self, where: str) -> str:
        """A new opaque delta token for `where`, pointing at now."""
        link = self._ids("delta-")
        self._tokens[link] = _Token(where, self._seq, self._clock())
        return link

    def since(self, delta_link: str, where: str) -> int:
        """The point a token names."""
        token = self._tokens.get(delta_link)
        if token is None or token.where != where:
            raise MicrosoftError("the delta token was not issued for this collection", status=400,
                                 code="ErrorInvalidSyncStateData")
        if self._clock() - token.issued > self._retention:
            raise DeltaExpiredError("SyncStateNotFound", status=410, code="SyncStateNotFound")
        return token.seq

    def items(self) -> Iterator[tuple[str, list[Event]]]:
        """Every item ever written, by id."""
        for ms_id in sorted(self._history):
            yield ms_id, self._history[ms_id]

    @staticmethod
    def split(events: list[Event], since: int) -> tuple[list[Event], list[Event]]:
        """The item's writes up to the token's point, and those after it."""
        return [e for e in events if e.seq <= since], [e for e in events if e.seq > since]


def batches(count: int, size: int = 20) -> int:
    """The $batch requests `count` items take (Graph takes 20 a batch; an empty call still costs one)."""
    return max(1, -(-count // size))


def not_json(body: dict[str, Any]) -> str | None:
    """Why Graph would refuse this body as JSON text (a 400), or None."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return "body is not valid JSON text"
    return None
