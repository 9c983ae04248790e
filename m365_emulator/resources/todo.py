"""Microsoft To Do on Graph v1.0: task lists and tasks under /me/todo/lists and /users/{id}/todo/lists.

Each list is a `store.Collection` (kind "todoTaskList") whose notification resource is
"/users/{uid}/todo/lists/{listId}/tasks"; each task an `Item` (kind "todoTask"). Every mailbox has the
"Tasks" list (wellknownListName "defaultList"), created on first use. Lists carry their own change key in
`props` so their @odata.etag changes on rename, as To Do's do.

What To Do answers, from Microsoft's examples (todo*.json): tasks carry @odata.etag, importance, isReminderOn,
status, title, createdDateTime, lastModifiedDateTime (seven fractional digits, UTC), id, body {content,
contentType} ("" / "text" when unset), categories, and only the dateTimeTimeZone members that are set, always
answered in UTC (the published update example answers an Eastern time in UTC). linkedResources are answered
inline when a task has any, each with the id To Do assigns. A task whose status becomes "completed" gets a
completedDateTime (now, unless the client sent one); leaving "completed" clears it.

Leniencies: read-only members in a body (id, createdDateTime, @odata.*) are ignored; unknown members are refused
with Graph's RequestBodyRead error.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from m365_emulator.kernel.emulator import Emulator
from m365_emulator.kernel.graph import (
    GraphError,
    bad_request,
    date_time_time_zone,
    enum_value,
    etag,
    etag_matches,
    item_body,
    new_change_key,
    not_found,
    unknown_property,
    wrong_type,
)
from m365_emulator.kernel.store import Collection, Item
from m365_emulator.kernel.timezones import UTC, graph_datetime, iso7, to_utc
from m365_emulator.resources.recurrence import normalise as normalise_recurrence

KIND_LIST = "todoTaskList"
KIND_TASK = "todoTask"
DEFAULT_LIST_NAME = "Tasks"
DEFAULT_PAGE = 10
EXTRA_KEY = "todo_default_list"

STATUSES = ("notStarted", "inProgress", "completed", "waitingOnOthers", "deferred")
IMPORTANCES = ("low", "normal", "high")
DATE_FIELDS = ("dueDateTime", "reminderDateTime", "startDateTime", "completedDateTime")
LINK_FIELDS = ("id", "webUrl", "applicationName", "displayName", "externalId")
READ_ONLY = ("id", "createdDateTime", "lastModifiedDateTime", "bodyLastModifiedDateTime", "hasAttachments",
             "linkedResources@odata.context", "checklistItems@odata.context", "attachments@odata.context")
TASK_PROPERTIES = ("id", "title", "body", "importance", "status", "isReminderOn", "categories", "createdDateTime",
                   "lastModifiedDateTime", "bodyLastModifiedDateTime", "hasAttachments", "recurrence",
                   "linkedResources") + DATE_FIELDS
LIST_PROPERTIES = ("id", "displayName", "isOwner", "isShared", "wellknownListName")


# ---------------------------------------------------------------------------------------------- time


def _date_value(name: str, value: Any) -> str | None:
    """A dateTimeTimeZone as the UTC instant To Do keeps (ISO text), or None to clear it."""
    if value is None:
        return None
    value = date_time_time_zone(name, value)
    return to_utc(value["dateTime"], value.get("timeZone") or "UTC").isoformat()


def date_json(stored: str) -> dict[str, str]:
    instant = dt.datetime.fromisoformat(stored)
    return {"dateTime": graph_datetime(instant.astimezone(UTC).replace(tzinfo=None)), "timeZone": "UTC"}


# ---------------------------------------------------------------------------------------- validation


def _body(value: Any) -> dict[str, str]:
    body = item_body(value)
    if body is None:
        return {"content": "", "contentType": "text"}
    kind, content = body
    return {"content": content, "contentType": kind}


def _links(value: Any, existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise wrong_type("linkedResources", "Collection(microsoft.graph.linkedResource)")
    known = {link["id"]: link for link in existing}
    links: list[dict[str, Any]] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise wrong_type("linkedResources", "microsoft.graph.linkedResource")
        link: dict[str, Any] = {}
        for key, part in entry.items():
            if key.startswith("@odata."):
                continue
            if key not in LINK_FIELDS:
                raise unknown_property(key, "linkedResource")
            if part is not None and not isinstance(part, str):
                raise wrong_type(key, "Edm.String")
            link[key] = part
        # To Do assigns the id; a client echoing an existing link keeps its id.
        link_id = link.get("id") if link.get("id") in known else str(uuid.uuid4())
        links.append({"id": link_id, **{k: v for k, v in link.items() if k != "id"}})
    return links


def parse_task(body: dict[str, Any], current: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """A task POST (current None) or PATCH body merged over the current data, with To Do's defaults and rules;
    `now` (the emulator clock) stamps a completion."""
    data: dict[str, Any] = dict(current) if current is not None else {
        "title": "", "body": {"content": "", "contentType": "text"}, "importance": "normal",
        "status": "notStarted", "isReminderOn": False, "categories": [], "linkedResources": []}
    touched: set[str] = set()
    for name, value in body.items():
        if name in READ_ONLY or name.startswith("@odata."):
            continue
        touched.add(name)
        if name == "title":
            if value is not None and not isinstance(value, str):
                raise wrong_type(name, "Edm.String")
            data[name] = value or ""
        elif name == "body":
            data[name] = _body(value)
        elif name == "importance":
            data[name] = enum_value(name, value, IMPORTANCES)
        elif name == "status":
            data[name] = enum_value(name, value, STATUSES)
        elif name == "isReminderOn":
            if not isinstance(value, bool):
                raise wrong_type(name, "Edm.Boolean")
            data[name] = value
        elif name == "categories":
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise wrong_type(name, "Collection(Edm.String)")
            data[name] = list(value)
        elif name in DATE_FIELDS:
            data[name] = _date_value(name, value)
        elif name == "recurrence":
            data[name] = normalise_recurrence(value, "UTC")
        elif name == "linkedResources":
            data[name] = _links(value, data.get("linkedResources") or [])
        else:
            raise unknown_property(name, "todoTask")
    if "reminderDateTime" in touched and data.get("reminderDateTime") and "isReminderOn" not in touched:
        data["isReminderOn"] = True  # setting a reminder time turns the reminder on, as in the To Do apps
    if data["status"] == "completed":
        if not data.get("completedDateTime"):
            data["completedDateTime"] = dt.datetime.fromtimestamp(now, UTC).isoformat()
    elif "status" in touched:
        data["completedDateTime"] = None
    return data


# ---------------------------------------------------------------------------------------------- lists

def _resource(user_id: str, list_id: str) -> str:
    return f"/users/{user_id}/todo/lists/{list_id}/tasks"


def ensure_default_list(emu: Emulator, user_id: str) -> str:
    return emu.store.default_collection(
        user_id, EXTRA_KEY, KIND_LIST,
        lambda: {"displayName": DEFAULT_LIST_NAME, "wellknownListName": "defaultList", "changeKey": new_change_key()},
        lambda cid: _resource(user_id, cid))


def task_lists(emu: Emulator, user_id: str) -> list[Collection]:
    return emu.store.default_first(user_id, KIND_LIST, ensure_default_list(emu, user_id))


def list_json(coll: Collection) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.todoTaskList", "@odata.etag": etag(coll.props["changeKey"]),
            "displayName": coll.props.get("displayName"), "isOwner": True, "isShared": False,
            "wellknownListName": coll.props.get("wellknownListName", "none"), "id": coll.id}


def _display_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request("The displayName of a task list must be a non-empty string.", "invalidRequest")
    return value


def create_list(emu: Emulator, user_id: str, body: dict[str, Any]) -> Collection:
    _check_list_body(body)
    ensure_default_list(emu, user_id)
    return emu.store.add_collection(user_id, KIND_LIST, {"displayName": _display_name(body.get("displayName")),
                                                        "wellknownListName": "none", "changeKey": new_change_key()},
                                    lambda cid: _resource(user_id, cid))


def _check_list_body(body: dict[str, Any]) -> None:
    for name in body:
        if name.startswith("@odata.") or name in ("id", "isOwner", "isShared", "wellknownListName"):
            continue
        if name != "displayName":
            raise unknown_property(name, "todoTaskList")


def find_list(emu: Emulator, user_id: str, list_id: str) -> Collection:
    ensure_default_list(emu, user_id)
    coll = emu.store.collection(user_id, list_id, KIND_LIST)
    if coll is None:
        raise not_found()
    return coll


def rename_list(emu: Emulator, user_id: str, list_id: str, body: dict[str, Any]) -> Collection:
    _check_list_body(body)
    with emu.store.lock:
        coll = find_list(emu, user_id, list_id)
        if "displayName" in body:
            emu.store.update_collection(user_id, coll.id, {"displayName": _display_name(body["displayName"]),
                                                           "changeKey": new_change_key()})
        return coll


def delete_list(emu: Emulator, user_id: str, list_id: str) -> None:
    coll = find_list(emu, user_id, list_id)
    if coll.props.get("wellknownListName") == "defaultList":
        raise GraphError(403, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
    emu.store.delete_collection(user_id, coll.id)


# ---------------------------------------------------------------------------------------------- tasks

def create_task(emu: Emulator, user_id: str, list_id: str, body: dict[str, Any]) -> Item:
    find_list(emu, user_id, list_id)
    data = parse_task(body, None, emu.core.clock.now())
    data["bodyLastModifiedDateTime"] = emu.core.clock.now()
    return emu.store.create_item(user_id, list_id, KIND_TASK, data)


def find_task(emu: Emulator, user_id: str, list_id: str, task_id: str) -> Item:
    coll = find_list(emu, user_id, list_id)
    found = emu.store.find(user_id, task_id)
    if found is None or found[1].kind != KIND_TASK or found[0].id != coll.id:
        raise not_found()
    return found[1]


def update_task(emu: Emulator, user_id: str, list_id: str, task_id: str, body: dict[str, Any],
                if_match: str | None = None) -> Item:
    with emu.store.lock:
        item = find_task(emu, user_id, list_id, task_id)
        _check_if_match(item, if_match)
        data = parse_task(body, item.data, emu.core.clock.now())
        if data.get("body") != item.data.get("body"):
            data["bodyLastModifiedDateTime"] = emu.core.clock.now()
        return emu.store.update_item(user_id, item.immutable_id, data)


def delete_task(emu: Emulator, user_id: str, list_id: str, task_id: str, if_match: str | None = None) -> None:
    with emu.store.lock:
        item = find_task(emu, user_id, list_id, task_id)
        _check_if_match(item, if_match)
        emu.store.delete_item(user_id, item.immutable_id)


def _check_if_match(item: Item, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, item.change_key):
        raise GraphError(412, "PreconditionFailed", "The ETag value provided in the If-Match header does not match "
                                                    "the current ETag value of the entity.")


def task_json(item: Item, immutable: bool) -> dict[str, Any]:
    data = item.data
    out: dict[str, Any] = {
        "@odata.etag": etag(item.change_key),
        "importance": data.get("importance", "normal"),
        "isReminderOn": bool(data.get("isReminderOn")),
        "status": data.get("status", "notStarted"),
        "title": data.get("title", ""),
        "createdDateTime": iso7(item.created),
        "lastModifiedDateTime": iso7(item.last_modified),
        "hasAttachments": False,
        "categories": list(data.get("categories") or []),
        "id": item.reported_id(immutable),
        "body": dict(data.get("body") or {"content": "", "contentType": "text"}),
    }
    if data.get("bodyLastModifiedDateTime") is not None:
        out["bodyLastModifiedDateTime"] = iso7(float(data["bodyLastModifiedDateTime"]))
    for name in DATE_FIELDS:
        if data.get(name):
            out[name] = date_json(data[name])
    if data.get("recurrence"):
        out["recurrence"] = data["recurrence"]
    if data.get("linkedResources"):
        out["linkedResources"] = [dict(link) for link in data["linkedResources"]]
    return out
