"""In-memory adapters of the ports: stores that keep the real rules and nothing else.

Each enforces what the real store enforces (stale ETags raise ConcurrencyError, inserting an existing id
raises AlreadyExistsError, ids are opaque, Graph's delta semantics) and runs the same contract suite as the
real adapter (tests/contracts). Fault switches and simulated crashes belong to the tests (tests/support).
"""
from sync_core.adapters.memory.contacts import DEFAULT_CONTACTS_FOLDER, MemoryContacts
from sync_core.adapters.memory.crm import MemoryCrm
from sync_core.adapters.memory.state import MemoryStateStore
from sync_core.adapters.memory.tasks import CALENDAR, DEFAULT_TASK_LIST, MemoryTasks, calendar_window

__all__ = ["CALENDAR", "DEFAULT_CONTACTS_FOLDER", "DEFAULT_TASK_LIST", "MemoryContacts", "MemoryCrm",
           "MemoryStateStore", "MemoryTasks", "calendar_window"]
