"""A sync invocation's time budget (issue 10): the run stops at a safe point before the host's functionTimeout.

A run checks `allows_another()` between chunks, never inside one (a chunk's Graph creates and their links are
saved together). The first chunk of an invocation always runs, so every invocation moves the sync forward.
The next chunk is expected to take as long as the longest so far did apart from pacing waits, plus the wait
the mailbox's pacer would impose on its requests now (after a burst the request window frees nothing until
its first request is a window old), and at least `chunk_floor_seconds`.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from typing import Protocol

from sync_core.domain.models import Progress, RunOutcome
from sync_core.ports import StateStore


class Pacing(Protocol):
    """What the budget needs of the mailbox's pacer (adapters.graph_session.Pacer)."""

    waited_seconds: float

    def delay_for(self, cost: int) -> float: ...


@dataclass
class Budget:
    seconds: float | None = None  # None: no limit (the CLI, tests of other features)
    chunk_floor_seconds: float = 0.0
    clock: Callable[[], float] = time.monotonic
    pacing: Pacing | None = None  # set once the run's Graph session exists
    chunk_cost: int = 0  # Graph requests a chunk may need (about one per record)
    started: float = field(default=0.0)
    longest_chunk: float = 0.0  # apart from pacing waits
    chunks: int = 0  # chunks applied in this invocation

    def __post_init__(self) -> None:
        self.started = self.clock()

    @classmethod
    def unlimited(cls) -> Budget:
        return cls(None)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def allows_another(self) -> bool:
        """Whether one more chunk fits in what is left (always, before the invocation's first chunk)."""
        if self.seconds is None or self.chunks == 0:
            return True
        paced = self.pacing.delay_for(self.chunk_cost) if self.pacing is not None and self.chunk_cost else 0.0
        return self.elapsed() + paced + max(self.longest_chunk, self.chunk_floor_seconds) <= self.seconds

    def new_part(self) -> None:
        """The tasks after the contacts: their first chunk runs too, so a budget the contacts used up never
        leaves the tasks without progress (the overrun is one chunk, an eighth of the budget at most)."""
        self.chunks = 0

    @contextmanager
    def chunk(self) -> Iterator[None]:
        began = self.clock()
        waited = self.pacing.waited_seconds if self.pacing is not None else 0.0
        yield
        paced = (self.pacing.waited_seconds - waited) if self.pacing is not None else 0.0
        self.longest_chunk = max(self.longest_chunk, self.clock() - began - paced)
        self.chunks += 1


def chunk_size_for(default: int, budget_seconds: float | None, rate_limit: int, window_seconds: float) -> int:
    """Records per chunk, so that one chunk at the request ceiling takes at most an eighth of the budget: the
    stop comes close to the budget without crossing it (a record costs about one Graph request)."""
    if budget_seconds is None:
        return default
    fits = int(rate_limit * budget_seconds / window_seconds / 8)
    return max(20, min(default, fits))


@dataclass
class Stint:
    """What one part of a run (contacts or tasks) did within the budget: records worked through, records it
    had to go through, and whether it stopped with work left."""

    done: int = 0
    total: int = 0
    stopped: bool = False


def safe_feed_position(end: int, required: dict[str, int], left: list[str]) -> int:
    """The feed position to store when `left` were not applied: just before the first entry that needs one of
    them (`required`: record id → the position of the feed entry that names it last). Entries before it name
    records applied, or records named again later (their later entry is read again)."""
    needed = [required[i] for i in left if i in required]
    return min(needed) - 1 if needed else end


def carried_progress(state: StateStore, tenant_id: str, user_id: str) -> Progress | None:
    """The progress of the run this one continues (the user's latest, when it stopped at its budget)."""
    latest = state.latest_runs(tenant_id, user_id, 1)
    if latest and latest[0].outcome is RunOutcome.CONTINUING:
        return latest[0].progress or Progress()
    return None


def run_progress(carried: Progress | None, contacts: Stint, tasks: Stint | None, outcome: RunOutcome) -> Progress | None:
    """Progress is kept on a run that stops at its budget and on every run of the chain it starts. `tasks` is
    None when the task sync did not run (the contacts used up the budget): its figures carry over."""
    if carried is None and outcome is not RunOutcome.CONTINUING:
        return None
    base = carried or Progress()
    if tasks is None:
        tasks_done, tasks_total = base.tasks_done, base.tasks_total
    else:
        tasks_done, tasks_total = base.tasks_done + tasks.done, base.tasks_done + tasks.total
    return Progress(contacts_done=base.contacts_done + contacts.done, contacts_total=base.contacts_done + contacts.total,
                    tasks_done=tasks_done, tasks_total=tasks_total)
