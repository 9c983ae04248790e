"""Where a user's tasks are kept (issue 5): the task state partition, each target's cursor, the marker that
says which target and sync mode the task links were made for, and the calendar window.

Stored data: task links and the task cursor live in the partition "{user}|tasks" (never meeting contact
links); each target keeps its own cursor "{user}|tasks|{target}" (the To Do list id or the calendar window,
and that target's deltaLink); the task cursor's folder_id holds the marker "tasks;target=…;mode=…".

The calendar window (calendar_window_past_days back, calendar_window_future_days ahead) is snapped to
weeks, so it moves once a week: a moved window starts a fresh delta round, which lists the window again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time as wall_time, timedelta
from urllib.parse import quote, unquote

from sync_core.domain.errors import ConcurrencyError, NotFoundError
from sync_core.domain.models import Cursor, SyncMode, TaskTarget, UserSyncSettings
from sync_core.kinds.tasks.mapping import at_local, user_zone
from sync_core.ports import StateStore


def task_partition(user_id: str) -> str:
    """The state-store partition of a user's task links and task cursor."""
    return f"{user_id}|tasks"


def target_cursor_key(user_id: str, target: TaskTarget) -> str:
    return f"{user_id}|tasks|{target.value}"


def calendar_window(now: datetime, settings: UserSyncSettings) -> str:
    """The calendarView window "start/end" (UTC ISO): at least the configured days back and ahead, from
    midnight in the user's zone, snapped to Mondays so that it moves once a week."""
    tz = user_zone(settings)
    today = now.astimezone(tz).date()
    first = today - timedelta(days=settings.calendar_window_past_days)
    first -= timedelta(days=first.weekday())
    last = today + timedelta(days=settings.calendar_window_future_days)
    last += timedelta(days=7 - last.weekday())
    start, end = at_local(first, wall_time(), tz), at_local(last, wall_time(), tz)
    return f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}"


def window_bounds(container: str) -> tuple[datetime, datetime]:
    start, _, end = container.partition("/")
    return (datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
            datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))


@dataclass(frozen=True)
class Marker:
    """What the task links were made for: the target and the sync mode of the last finished run (a change
    means a full look); whether a full look was started but not finished (a run died during it); and the
    other targets an unfinished run was writing to (their rounds are replayed before anything moves)."""

    target: TaskTarget
    mode: SyncMode
    full_owed: bool = False
    pending: frozenset[TaskTarget] = frozenset()
    # A full look that stopped at its budget: "target|mode|id", tasks up to that id are done for that target and
    # mode (a later switch of either starts the full look over).
    after: str | None = None

    def encode(self) -> str:
        text = f"tasks;target={self.target.value};mode={self.mode.value}"
        if self.full_owed:
            text += ";full=owed"
        if self.pending:
            text += ";pending=" + ",".join(sorted(t.value for t in self.pending))
        if self.after is not None:
            text += ";after=" + quote(self.after, safe="")
        return text

    @classmethod
    def parse(cls, text: str | None) -> Marker | None:
        if not text or not text.startswith("tasks;"):
            return None
        parts = dict(part.split("=", 1) for part in text.split(";")[1:] if "=" in part)
        try:
            pending = frozenset(TaskTarget(t) for t in parts.get("pending", "").split(",") if t)
            after = unquote(parts["after"]) if "after" in parts else None
            return cls(TaskTarget(parts.get("target", "")), SyncMode(parts.get("mode", "")),
                       parts.get("full") == "owed", pending, after)
        except ValueError:
            return None

    def done_up_to(self, target: TaskTarget, mode: SyncMode) -> str | None:
        """The last task id a stopped full look finished, if it was a look for this target and mode."""
        if self.after is None:
            return None
        done_target, _, rest = self.after.partition("|")
        done_mode, _, last = rest.partition("|")
        return last if done_target == target.value and done_mode == mode.value and last else None


def forget_task_state(state: StateStore, tenant_id: str, user_id: str) -> None:
    """Everything the task sync keeps about a user (links, cursors): for disconnecting a user. Quarantine
    entries live in the user's own list and go with it."""
    partition = task_partition(user_id)
    for link in list(state.iter_links(tenant_id, partition)):
        try:
            state.delete_link(link)
        except (ConcurrencyError, NotFoundError):
            continue
    for key in (partition, *(target_cursor_key(user_id, t) for t in TaskTarget)):
        cursor = state.get_cursor(tenant_id, key)
        if cursor.etag is not None:
            state.save_cursor(Cursor(tenant_id=tenant_id, user_id=key, etag=cursor.etag))
