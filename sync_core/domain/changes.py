"""What Microsoft answers, the same shape for every kind of item: one write result."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

I = TypeVar("I")  # the kind's Microsoft item (MsContact, MsTask)


@dataclass(frozen=True)
class WriteResult(Generic[I]):
    """Outcome of one item of a batched Graph write; `key` is the caller's key (CRM id or Graph id), `item`
    what Graph answered for a create or update."""

    key: str
    ok: bool
    item: I | None = None
    status: int = 0
    error: str | None = None
    retry_after: float | None = None
