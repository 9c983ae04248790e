"""`sync_user` runs the kinds of `sync_core.sync.user.KINDS` in turn (issue 11): a kind added to the list runs
in the same run, under the same lease and tally, sees only its own quarantine entries, and a kind that stops at
its budget leaves the kinds after it to the continuation."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from sync_core.domain.models import QuarantineEntry, RunOutcome
from sync_core.sync import user as sync_module
from sync_core.sync.run import RunPart
from sync_core.sync.user import Kind, Mailbox
from tests.core.core_world import TENANT, USER, World


def _entry(side: str, record_id: str) -> QuarantineEntry:
    return QuarantineEntry(tenant_id=TENANT, user_id=USER, side=side, record_id=record_id, reason="unreadable",
                           first_seen=datetime(2026, 3, 1, tzinfo=timezone.utc))


def test_a_kind_added_to_the_list_runs_after_the_contacts_with_its_own_quarantine(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    world.contact(world.account("Acme"), first_name="Ada")
    for entry in (_entry("crm", "note:n1"), _entry("crm", "task:t1"), _entry("crm", "c-404")):
        world.state.put_quarantine(entry)
    contacts, tasks = sync_module.KINDS
    own: dict[str, list[str]] = {}
    created_before: list[int] = []

    def watched(kind: Kind) -> Kind:
        def run(part: RunPart, mailbox: Mailbox) -> None:
            own[kind.name] = [q.record_id for q in world.state.list_quarantine(TENANT, USER) if part.owns(q)]
            kind.run(part, mailbox)
        return Kind(kind.name, kind.enabled, run, kind.owns)

    def notes(part: RunPart, mailbox: Mailbox) -> None:
        created_before.append(part.tally.microsoft["created"])
        part.renew()  # the run's lease, renewed like before every chunk
        part.tally.log("notes: looked")

    monkeypatch.setattr(sync_module, "KINDS", (watched(contacts), tasks, watched(
        Kind("notes", lambda user, mailbox: True, notes, owns=lambda q: q.record_id.startswith("note:")))))
    run = world.sync()
    # The contacts ran first, in this same run: their create is in the tally the new kind adds to.
    assert created_before == [1]
    assert "notes: looked" in run.log and run.microsoft.created == 1
    assert own == {"contacts": ["c-404"], "notes": ["note:n1"]}  # the tasks are off: no tasks port
    world.sync()  # the lease was released: the next run takes it
    assert created_before == [1, 0]


def test_a_kind_that_stops_at_its_budget_leaves_the_next_kinds_to_the_continuation(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    ran: list[str] = []

    def stopping(part: RunPart, mailbox: Mailbox) -> None:
        ran.append("stopping")
        part.stint.total, part.stint.done, part.stint.stopped = 3, 1, True

    def later(part: RunPart, mailbox: Mailbox) -> None:
        ran.append("later")

    monkeypatch.setattr(sync_module, "KINDS", (*sync_module.KINDS, Kind("stopping", lambda u, m: True, stopping),
                                               Kind("later", lambda u, m: True, later)))
    run = world.sync()
    assert ran == ["stopping"]
    assert run.outcome is RunOutcome.CONTINUING
