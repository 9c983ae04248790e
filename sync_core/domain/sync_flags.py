"""The per-user coalescing flags of sync jobs (see app/jobs.py): whether a job is queued, whether more
work arrived meanwhile, and until when a follow-up job after a held lease is already scheduled."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyncFlags:
    tenant_id: str
    user_id: str
    queued: bool = False
    queued_at: float = 0.0  # epoch seconds of the last send
    dirty: bool = False
    follow_at: float | None = None  # epoch seconds; None: never scheduled (the row has no such field)
    etag: str | None = None  # None: not stored yet
