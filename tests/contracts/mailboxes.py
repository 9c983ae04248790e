"""One mailbox under test for the Microsoft ports' contracts: the port adapters (memory, or Graph over HTTP on
the emulator) and the mailbox's owner, who does what the ports never do (files a card of their own, moves
one to another folder, deletes one in Outlook) and can make the server lose its delta sync state (Graph:
the emulator's expire-delta-tokens; memory: its clock past the tokens' 7-day retention)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from m365_emulator.server import ControlClient
from sync_core.adapters.graph.contacts import GraphContacts
from sync_core.adapters.graph.session import GraphSession
from sync_core.adapters.graph.tasks import GraphTasks
from sync_core.adapters.memory import MemoryContacts, MemoryTasks
from sync_core.adapters.tokens import StaticTokenCredential
from sync_core.domain.models import UserSyncSettings
from sync_core.ports import MicrosoftContactsPort, MicrosoftTasksPort


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Mailbox:
    kind: str  # "memory" | "graph"
    contacts: MicrosoftContactsPort
    make_tasks: Callable[[UserSyncSettings], MicrosoftTasksPort]
    own_contact: Callable[[str, dict[str, Any]], str]  # (folder id, Graph JSON) → id
    move_contact: Callable[[str, str], None]  # (contact id, destination folder id)
    delete_contact: Callable[[str], None]
    lose_sync_state: Callable[[], None]
    closers: list[Callable[[], None]] = field(default_factory=list)

    def tasks(self, settings: UserSyncSettings) -> MicrosoftTasksPort:
        return self.make_tasks(settings)

    def close(self) -> None:
        for close in self.closers:
            close()


def memory_mailbox() -> Mailbox:
    clock = ManualClock()
    contacts = MemoryContacts(clock=clock)
    made: list[MemoryTasks] = []

    def make_tasks(settings: UserSyncSettings) -> MemoryTasks:
        made.append(MemoryTasks(settings, clock=clock))
        return made[-1]

    # The owner's edits go through the adapter's own storage step (a test reaching in, as Outlook would).
    def own_contact(folder_id: str, body: dict[str, Any]) -> str:
        ms_id = contacts._ids("AAMk-")
        contacts._store(ms_id, dict(body), folder_id)
        return ms_id

    def move_contact(ms_id: str, folder_id: str) -> None:
        contacts._store(ms_id, dict(contacts.items[ms_id]), folder_id)

    def lose_sync_state() -> None:
        clock.now += timedelta(days=7, seconds=1)

    return Mailbox("memory", contacts, make_tasks, own_contact, move_contact, contacts._remove, lose_sync_state)


def graph_mailbox(graph_url: str, control: ControlClient, user: dict[str, Any]) -> Mailbox:
    user_id = user["id"]
    credential = StaticTokenCredential(lambda: (control.token(user_id), int(time.time()) + 3000))
    session = GraphSession(graph_url, credential, timeout=30)
    owner = httpx.Client(base_url=graph_url.rstrip("/") + "/me", timeout=30, trust_env=False,
                         headers={"Authorization": f"Bearer {control.token(user_id)}"})

    def own_contact(folder_id: str, body: dict[str, Any]) -> str:
        answer = owner.post(f"/contactFolders/{folder_id}/contacts", json=body)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def move_contact(ms_id: str, folder_id: str) -> None:
        control.move_contact(user_id, ms_id, folder_id)

    def delete_contact(ms_id: str) -> None:
        answer = owner.delete(f"/contacts/{ms_id}")
        assert answer.status_code == 204, answer.text

    mailbox = Mailbox("graph", GraphContacts(session), lambda settings: GraphTasks(session, settings), own_contact,
                      move_contact, delete_contact, lambda: control.expire_delta_tokens(user_id))
    mailbox.closers += [session.close, owner.close]
    return mailbox
