"""Runs that stop at their time budget (issue 10), on the fakes: every run applies one chunk and stops; the
chain of runs ends with both sides agreeing, nothing written twice, and edits made meanwhile not lost."""
from __future__ import annotations

from collections import Counter

from sync_core.sync.budget import Budget
from sync_core.sync.tally import EngineConfig
from sync_core.domain.models import RunOutcome, RunRecord
from sync_core.kinds.contacts.run import SyncOptions
from tests.core.core_world import TENANT, USER, World
from tests.tasks.task_world import TaskWorld

OPTIONS = SyncOptions(chunk_size=10, engine=EngineConfig(write_chunk=10))


def one_chunk() -> Budget:
    """A budget that lets each run (and each part of it) apply exactly one chunk."""
    return Budget(seconds=0.5, chunk_floor_seconds=1.0)


def until_done(sync: object, limit: int = 40) -> list[RunRecord]:
    runs: list[RunRecord] = []
    for _ in range(limit):
        run = sync()  # type: ignore[operator]
        runs.append(run)
        if run.outcome is not RunOutcome.CONTINUING:
            return runs
    raise AssertionError(f"still continuing after {limit} runs: {[r.progress for r in runs[-3:]]}")


def test_a_first_push_continues_chunk_by_chunk_and_sends_each_contact_once() -> None:
    world = World()
    account = world.account("Acme")
    made = [world.contact(account, first_name=f"P{i:02d}") for i in range(25)]
    runs = until_done(lambda: world.sync(OPTIONS, budget=one_chunk()))
    # 10 a run; our creates coming back in the next round take no run of their own.
    assert [r.outcome for r in runs] == [RunOutcome.CONTINUING, RunOutcome.CONTINUING, RunOutcome.SUCCEEDED]
    assert Counter(c.fields.first_name for c in world.outlook().values()) == Counter(c.first_name for c in made)
    assert sum(r.microsoft.created for r in runs) == 25
    assert runs[-1].progress is not None and (runs[-1].progress.contacts_done, runs[-1].progress.contacts_total) == (25, 25)
    # The feed position went forward with the chunks, never back to the start.
    assert runs[0].progress is not None and runs[0].progress.contacts_done == 10
    assert world.sync(OPTIONS).microsoft.created == 0  # settled: a later run writes nothing


def test_edits_made_while_a_push_continues_reach_outlook() -> None:
    world = World()
    account = world.account("Acme")
    made = [world.contact(account, first_name=f"P{i:02d}") for i in range(25)]
    first = world.sync(OPTIONS, budget=one_chunk())
    assert first.outcome is RunOutcome.CONTINUING
    done = next(c for c in made if c.id in world.pairs())
    waiting = next(c for c in reversed(made) if c.id not in world.pairs())
    world.crm.edit_contact(TENANT, done.id, job_title="Edited after its push")
    world.crm.edit_contact(TENANT, waiting.id, job_title="Edited before its push")
    until_done(lambda: world.sync(OPTIONS, budget=one_chunk()))
    outlook = {ms_id: c.fields for ms_id, c in world.outlook().items()}
    pairs = world.pairs()
    assert outlook[pairs[done.id]].job_title == "Edited after its push"
    assert outlook[pairs[waiting.id]].job_title == "Edited before its push"
    assert len(outlook) == 25


def test_an_account_rename_fanned_out_over_several_runs_reaches_every_contact_without_looping() -> None:
    world = World()
    account = world.account("Old name")
    made = [world.contact(account, first_name=f"P{i:02d}") for i in range(35)]
    world.sync(OPTIONS)
    world.crm.rename_account(TENANT, account.id, "New name")  # no contact has a feed entry of its own
    runs = until_done(lambda: world.sync(OPTIONS, budget=one_chunk()))
    assert len(runs) >= 4  # 35 contacts, 10 a run
    assert {c.fields.company for c in world.outlook().values()} == {"New name"}
    assert sum(r.microsoft.updated for r in runs) == len(made)
    assert world.state.get_cursor(TENANT, USER).fanout_after is None


def test_outlook_contacts_to_import_over_several_runs_are_imported_once() -> None:
    world = World()
    world.account("Acme")
    world.sync(OPTIONS)
    for i in range(25):
        world.ms.user_create(world.folder, givenName=f"Own{i:02d}", surname="Outlook")
    runs = until_done(lambda: world.sync(OPTIONS, budget=one_chunk()))
    assert any(r.outcome is RunOutcome.CONTINUING for r in runs)
    names = Counter(c.first_name for c in world.crm_contacts())
    assert names == Counter(f"Own{i:02d}" for i in range(25))
    assert sum(r.crm.created for r in runs) == 25


def test_a_first_task_push_continues_and_keeps_the_feed_position_of_its_first_run() -> None:
    world = TaskWorld()
    made = [world.task(subject=f"Task {i:02d}") for i in range(25)]
    runs = until_done(lambda: _task_sync(world))
    assert any(r.outcome is RunOutcome.CONTINUING for r in runs)
    assert Counter(t.fields.subject for t in world.todo_items().values()) == Counter(t.subject for t in made)
    assert sum(r.microsoft.created for r in runs) == 25
    final = runs[-1].progress
    assert final is not None and (final.tasks_done, final.tasks_total) == (25, 25)


def test_a_task_edited_after_its_push_while_the_chain_goes_on_is_synced() -> None:
    world = TaskWorld()
    made = [world.task(subject=f"Task {i:02d}") for i in range(25)]
    assert _task_sync(world).outcome is RunOutcome.CONTINUING
    linked = {link.crm_id for link in world.links()}
    done = next(t for t in made if t.id in linked)
    world.crm.update_task(world.crm.get_tasks(TENANT, [done.id])[done.id].model_copy(update={"subject": "Renamed"}))
    until_done(lambda: _task_sync(world))
    world.sync()  # the feed since the first run's position: the edit made meanwhile
    subjects = Counter(t.fields.subject for t in world.todo_items().values())
    assert subjects["Renamed"] == 1 and sum(subjects.values()) == 25


def _task_sync(world: TaskWorld) -> RunRecord:
    from sync_core.sync.user import sync_user

    world.ms.settings = world.user
    return sync_user(world.user, world.crm, world.contacts, world.state, now=world.clock, sleep=world.sleeps.append,
                     options=OPTIONS, tasks=world.ms, budget=one_chunk(), task_chunk_size=10)


class _Ticks:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_counts_the_wait_the_pacer_would_impose_on_the_next_chunk() -> None:
    from sync_core.adapters.graph.session import Pacer

    ticks = _Ticks()
    pacer = Pacer(100, 60, headroom=1.0, clock=ticks, sleep=lambda seconds: None)
    budget = Budget(seconds=30, clock=ticks, pacing=pacer, chunk_cost=20)
    assert budget.allows_another()  # the invocation's first chunk always runs
    with budget.chunk():
        pacer.acquire(80)  # a burst: 80 of the window's 100 requests at once
        ticks.now += 2
    assert pacer.delay_for(20) == 0.0 and budget.allows_another()  # 20 more fit in the window now
    with budget.chunk():
        pacer.acquire(20)
        ticks.now += 2
    # The window is full until the burst is 60 s old: the next chunk would wait 56 s, past the 30 s budget.
    assert pacer.delay_for(20) == 56.0
    assert not budget.allows_another()
    ticks.now += 56
    assert pacer.delay_for(20) == 0.0
