"""The To Do and Calendar sections of /_emulator/ui (ui/contacts.py's `emu.ui_sections` hook): each mailbox's task lists
and tasks, calendars and events, with forms to create, edit and delete them. The forms post to routes under
/_emulator/ui/users/{user}/todo/... and /calendar/...; changes go through resources/todo.py and resources/calendars.py, so they
appear in delta and fire change notifications like changes made in Outlook."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from m365_emulator.kernel.emulator import Emulator
from m365_emulator.kernel.graph import GraphError
from m365_emulator.resources import calendars as calendar, todo
from m365_emulator.resources.event_model import When
from m365_emulator.ui.html import back_to, esc, refused, segment

STATUSES = todo.STATUSES


def _input(name: str, label: str, value: str = "", kind: str = "text") -> str:
    return f'<label>{esc(label)} <input type="{kind}" name="{name}" value="{esc(value)}"></label> '


def _status_select(current: str) -> str:
    options = "".join(f'<option{" selected" if s == current else ""}>{s}</option>' for s in STATUSES)
    return f'<label>Status <select name="status">{options}</select></label> '


# ---------------------------------------------------------------------------------------------- To Do

def render_todo(emu: Emulator, user_id: str) -> str:
    base = f"/_emulator/ui/users/{segment(user_id)}/todo"
    parts = []
    for coll in todo.task_lists(emu, user_id):
        lid = segment(coll.id)
        with emu.store.lock:
            items = sorted(coll.items.values(), key=lambda i: (i.created, i.immutable_id))
            rows = []
            for item in items:
                data = item.data
                due = todo.date_json(data["dueDateTime"])["dateTime"][:10] if data.get("dueDateTime") else ""
                rows.append(
                    f'<tr id="task-{esc(item.immutable_id)}"><td><form method="post" action="{base}/lists/{lid}/tasks/'
                    f'{segment(item.immutable_id)}">{_input("title", "Title", data.get("title", ""))}'
                    f'{_status_select(data.get("status", "notStarted"))}{_input("due", "Due (UTC date)", due, "date")}'
                    f'<button>Save</button></form></td><td><form class="inline" method="post" action="{base}/lists/'
                    f'{lid}/tasks/{segment(item.immutable_id)}/delete"><button>Delete</button></form></td></tr>')
        delete = "" if coll.props.get("wellknownListName") == "defaultList" else (
            f'<form class="inline" method="post" action="{base}/lists/{lid}/delete"><button>Delete list</button></form>')
        parts.append(
            f'<div class="folder" id="list-{esc(coll.id)}"><h4>{esc(coll.props.get("displayName"))} '
            f'<span class="muted">{len(items)} tasks</span> {delete}</h4>'
            f'<table><tr><th>Task</th><th></th></tr>{"".join(rows)}</table>'
            f'<form method="post" action="{base}/lists/{lid}/tasks">{_input("title", "New task")}'
            f'{_input("due", "Due (UTC date)", "", "date")}<button>Create task</button></form></div>')
    parts.append(f'<form method="post" action="{base}/lists">{_input("displayName", "New list")}'
                 f'<button>Create list</button></form>')
    return "".join(parts)


def _task_changes(form: dict[str, str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if "title" in form:
        changes["title"] = form["title"].strip()
    if form.get("status"):
        changes["status"] = form["status"]
    if "due" in form:
        due = form["due"].strip()
        changes["dueDateTime"] = {"dateTime": f"{due}T00:00:00", "timeZone": "UTC"} if due else None
    return changes


# ------------------------------------------------------------------------------------------- Calendar

EVENT_FIELDS = (("subject", "Subject"), ("start", "Start"), ("end", "End"), ("zone", "Time zone"))
_ALL_DAY_HIDDEN = '<input type="hidden" name="isAllDay" value="true">'  # an edited all-day event stays whole days


def render_calendar(emu: Emulator, user_id: str) -> str:
    base = f"/_emulator/ui/users/{segment(user_id)}/calendar"
    parts = []
    for coll in calendar.calendars(emu, user_id):
        cid = segment(coll.id)
        with emu.store.lock:
            items = sorted(coll.items.values(), key=lambda i: i.data["start"]["utc"])
            rows = []
            for item in items:
                data = item.data
                start, end = When.from_data(data["start"]), When.from_data(data["end"])
                values = {"subject": data.get("subject", ""), "start": start.local.strftime("%Y-%m-%dT%H:%M"),
                          "end": end.local.strftime("%Y-%m-%dT%H:%M"), "zone": start.zone}
                series = ' <span class="muted">(recurring series)</span>' if data.get("recurrence") else ""
                all_day = ' <span class="muted">(all day)</span>' if data.get("isAllDay") else ""
                rows.append(
                    f'<tr id="event-{esc(item.immutable_id)}"><td><form method="post" action="{base}/events/'
                    f'{segment(item.immutable_id)}">{_event_inputs(values)}'
                    f'{_ALL_DAY_HIDDEN if data.get("isAllDay") else ""}<button>Save</button></form>{series}{all_day}'
                    f'</td><td><form class="inline" method="post" action="{base}/events/{segment(item.immutable_id)}/'
                    f'delete"><button>Delete</button></form></td></tr>')
        parts.append(
            f'<div class="folder" id="calendar-{esc(coll.id)}"><h4>{esc(coll.props.get("name"))} '
            f'<span class="muted">{len(items)} events</span></h4>'
            f'<table><tr><th>Event</th><th></th></tr>{"".join(rows)}</table>'
            f'<form method="post" action="{base}/calendars/{cid}/events">{_event_inputs({"zone": "UTC"})}'
            f'<label>All day <input type="checkbox" name="isAllDay" value="true"></label> '
            f'<button>Create event</button></form></div>')
    return "".join(parts)


def _event_inputs(values: dict[str, str]) -> str:
    kinds = {"start": "datetime-local", "end": "datetime-local"}
    return "".join(_input(name, label, values.get(name, ""), kinds.get(name, "text")) for name, label in EVENT_FIELDS)


def _event_changes(form: dict[str, str], creating: bool) -> dict[str, Any]:
    zone = form.get("zone", "").strip() or "UTC"
    changes: dict[str, Any] = {}
    if "subject" in form:
        changes["subject"] = form["subject"].strip()
    all_day = form.get("isAllDay") == "true"
    for name in ("start", "end"):
        value = form.get(name, "").strip()
        if value:
            if all_day:
                value = value[:10] + "T00:00"
            changes[name] = {"dateTime": value + (":00" if len(value) == 16 else ""), "timeZone": zone}
        elif creating:
            raise ValueError(f"{name} is required")
    if creating and all_day:
        changes["isAllDay"] = True
    return changes


# --------------------------------------------------------------------------------------------- routes

Handler = Callable[[str, dict[str, str], dict[str, str]], Awaitable[str]]


def _action(emu: Emulator, func: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A form post: run it, then back to the page at the changed item; a refused change shows why."""
    async def wrapped(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        uid = request.path_params["user"]
        try:
            if uid not in emu.core.users:
                raise KeyError(f"no user {uid}")
            anchor = await func(uid, dict(request.path_params), form)
        except (GraphError, ValueError, KeyError) as err:
            return refused(err)
        return back_to(anchor)
    return wrapped


def todo_routes(emu: Emulator) -> list[Route]:
    async def create_list(uid: str, params: dict[str, str], form: dict[str, str]) -> str:
        return "list-" + todo.create_list(emu, uid, {"displayName": form.get("displayName", "").strip()}).id

    async def delete_list(uid: str, params: dict[str, str], form: dict[str, str]) -> str:
        todo.delete_list(emu, uid, params["list"])
        return f"user-{uid}"

    async def create_task(uid: str, params: dict[str, str], form: dict[str, str]) -> str:
        todo.create_task(emu, uid, params["list"], {k: v for k, v in _task_changes(form).items() if v is not None})
        return f"list-{params['list']}"

    async def edit_task(uid: str, params: dict[str, str], form: dict[str, str]) -> str:
        todo.update_task(emu, uid, params["list"], params["task"], _task_changes(form))
        return f"task-{params['task']}"

    async def delete_task(uid: str, params: dict[str, str], form: dict[str, str]) -> str:
        todo.delete_task(emu, uid, params["list"], params["task"])
        return f"list-{params['list']}"

    base = "/ui/users/{user}/todo/lists"
    return [
        Route(base, _action(emu, create_list), methods=["POST"]),
        Route(f"{base}/{{list}}/delete", _action(emu, delete_list), methods=["POST"]),
        Route(f"{base}/{{list}}/tasks", _action(emu, create_task), methods=["POST"]),
        Route(f"{base}/{{list}}/tasks/{{task}}", _action(emu, edit_task), methods=["POST"]),
        Route(f"{base}/{{list}}/tasks/{{task}}/delete", _action(emu, delete_task), methods=["POST"]),
    ]


def calendar_routes(emu: Emulator) -> list[Route]:
    async def create_event(uid: str, params: dict[str, str], form: dict[str, str]) -> str:
        calendar.create_event(emu, uid, params["calendar"], _event_changes(form, creating=True))
        return f"calendar-{params['calendar']}"

    async def edit_event(uid: str, params: dict[str, str], form: dict[str, str]) -> str:
        calendar.update_event(emu, uid, params["event"], _event_changes(form, creating=False))
        return f"event-{params['event']}"

    async def delete_event(uid: str, params: dict[str, str], form: dict[str, str]) -> str:
        calendar.delete_event(emu, uid, params["event"])
        return f"user-{uid}"

    base = "/ui/users/{user}/calendar"
    return [
        Route(f"{base}/calendars/{{calendar}}/events", _action(emu, create_event), methods=["POST"]),
        Route(f"{base}/events/{{event}}", _action(emu, edit_event), methods=["POST"]),
        Route(f"{base}/events/{{event}}/delete", _action(emu, delete_event), methods=["POST"]),
    ]


def register_todo(emu: Emulator) -> None:
    emu.ui_sections.append(("To Do", render_todo))
    emu.control_routes.extend(todo_routes(emu))


def register_calendar(emu: Emulator) -> None:
    emu.ui_sections.append(("Calendar", render_calendar))
    emu.control_routes.extend(calendar_routes(emu))
