"""What every kind's executor counts and records: the run's tally, how a write's answer is classified, and how
a failing record goes onto the user's quarantine list."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sync_core.domain.models import QuarantineEntry, RunRecord, SideCounts
from sync_core.sync.actions import Side
from sync_core.ports import StateStore


@dataclass(frozen=True)
class EngineConfig:
    write_chunk: int = 100  # items per port call (the adapter splits them into $batch requests of 20)
    throttle_rounds: int = 3  # retries of throttled items within a run, each after the longest Retry-After
    max_wait_seconds: float = 60.0  # never sleep longer than this for one Retry-After
    log_limit: int = 200  # log lines kept in a run record


@dataclass
class Tally:
    """What a run did, counted as it goes; folded into the RunRecord at the end."""

    log_limit: int = 200
    crm: dict[str, int] = field(default_factory=lambda: dict(created=0, updated=0, deleted=0, errors=0))
    microsoft: dict[str, int] = field(default_factory=lambda: dict(created=0, updated=0, deleted=0, errors=0))
    conflicts: int = 0
    quarantined: int = 0
    hold_delta: bool = False  # a Microsoft change could not be applied: keep the old deltaLink to replay it
    guarded: bool = False  # the mass-delete guard held deletions back
    lines: list[str] = field(default_factory=list)
    dropped_lines: int = 0

    def side(self, side: Side) -> dict[str, int]:
        return self.crm if side is Side.CRM else self.microsoft

    def log(self, line: str) -> None:
        if len(self.lines) < self.log_limit:
            self.lines.append(line)
        else:
            self.dropped_lines += 1

    @property
    def failures(self) -> int:
        return self.crm["errors"] + self.microsoft["errors"] + self.quarantined + int(self.guarded)

    def fold_into(self, run: RunRecord) -> RunRecord:
        lines = list(self.lines)
        if self.dropped_lines:
            lines.append(f"... {self.dropped_lines} more log lines not kept")
        return run.model_copy(update={
            "crm": SideCounts(**self.crm), "microsoft": SideCounts(**self.microsoft),
            "conflicts": self.conflicts, "quarantined": self.quarantined, "log": tuple(lines),
        })


class Answer(Protocol):
    """One item's answer to a batched Graph write (WriteResult)."""

    @property
    def key(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def retry_after(self) -> float | None: ...


def outcome(result: Answer) -> str:
    """ok | gone (404) | throttled | unknown (may or may not have happened) | rejected (a 4xx: will not work)."""
    if result.ok:
        return "ok"
    if result.status == 404:
        return "gone"
    if result.status in (429, 503) or result.retry_after is not None:
        return "throttled"
    if result.status == 0 or result.status >= 500 or result.status in (408, 504) or 200 <= result.status < 300:
        return "unknown"
    return "rejected"


def record_failure(state: StateStore, tally: Tally, tenant_id: str, user_id: str, write_side: Side, record_side: Side,
                   record_id: str, reason: str, *, retry: bool, detail: str, now: datetime, label: str = "") -> None:
    """A record that failed, on the user's quarantine list. retry: counted as an error of `write_side` and
    retried next run; else quarantined until it changes. `reason` goes to the run log and must hold no
    personal data; `detail` (e.g. Graph's error message) only to the user's own list."""
    state.put_quarantine(QuarantineEntry(tenant_id=tenant_id, user_id=user_id, side=record_side.value, record_id=record_id,
                                         reason=f"{reason}: {detail}" if detail else reason, first_seen=now))
    if retry:
        tally.side(write_side)["errors"] += 1
        if record_side is Side.MICROSOFT:
            tally.hold_delta = True  # the Microsoft change comes again with the same deltaLink
        tally.log(f"{label}error {record_side.value}:{record_id}: {reason} (retried next run)")
    else:
        tally.quarantined += 1
        tally.log(f"{label}quarantined {record_side.value}:{record_id}: {reason}")
