"""Outlook calendars and events on Graph v1.0, for /me and /users/{id}.

Each calendar is a `store.Collection` (kind "calendar", notification resource
"/users/{uid}/calendars/{calendarId}/events"); each event an `Item` (kind "event") whose data event_model.py
defines. Every mailbox has the default "Calendar", created on first use; /me/events and /me/calendar/... reach it,
/me/events/{id} reaches an event in any calendar. Occurrences of a recurring series are not items:
occurrences.py derives them, with stable ids (GET, PATCH → exception, DELETE → cancelled occurrence).

`transactionId`: a second POST with a transactionId already used in the mailbox answers the existing event
instead of creating another (the property exists "to avoid redundant POST operations in case of client
retries"; Outlook's exact answer to the repeat is not documented).
"""
from __future__ import annotations

from typing import Any

from m365_emulator.kernel.emulator import Emulator, GraphContext
from m365_emulator.kernel.graph import (
    GraphError,
    apply_select,
    bad_request,
    etag_matches,
    new_change_key,
    not_found,
    unknown_property,
    wrong_type,
)
from m365_emulator.kernel.store import Collection, Item
from m365_emulator.resources.event_json import event_json, extended_json
from m365_emulator.resources.event_model import new_ical_uid, parse_event

KIND_CALENDAR = "calendar"
KIND_EVENT = "event"
DEFAULT_CALENDAR_NAME = "Calendar"
DEFAULT_PAGE = 10
EXTRA_KEY = "calendar_default"
CALENDAR_PROPERTIES = ("id", "name", "color", "hexColor", "isDefaultCalendar", "changeKey", "canShare",
                       "canViewPrivateItems", "canEdit", "allowedOnlineMeetingProviders",
                       "defaultOnlineMeetingProvider", "isTallyingResponses", "isRemovable", "owner")

# ------------------------------------------------------------------------------------------ calendars

def _resource(user_id: str, calendar_id: str) -> str:
    return f"/users/{user_id}/calendars/{calendar_id}/events"


def ensure_default_calendar(emu: Emulator, user_id: str) -> str:
    return emu.store.default_collection(
        user_id, EXTRA_KEY, KIND_CALENDAR,
        lambda: {"name": DEFAULT_CALENDAR_NAME, "isDefault": True, "changeKey": new_change_key()},
        lambda c: _resource(user_id, c))


def calendars(emu: Emulator, user_id: str) -> list[Collection]:
    return emu.store.default_first(user_id, KIND_CALENDAR, ensure_default_calendar(emu, user_id))


def calendar_json(emu: Emulator, coll: Collection, user_id: str) -> dict[str, Any]:
    user = emu.core.users.get(user_id)
    default = bool(coll.props.get("isDefault"))
    return {"id": coll.id, "name": coll.props.get("name"), "color": coll.props.get("color", "auto"),
            "hexColor": coll.props.get("hexColor", ""), "isDefaultCalendar": default,
            "changeKey": coll.props["changeKey"], "canShare": True, "canViewPrivateItems": True, "canEdit": True,
            "allowedOnlineMeetingProviders": ["teamsForBusiness"], "defaultOnlineMeetingProvider": "teamsForBusiness",
            "isTallyingResponses": True, "isRemovable": not default,
            "owner": {"name": user.display_name if user else None,
                      "address": user.user_principal_name if user else None}}


def find_calendar(emu: Emulator, user_id: str, calendar_id: str) -> Collection:
    ensure_default_calendar(emu, user_id)
    coll = emu.store.collection(user_id, calendar_id, KIND_CALENDAR)
    if coll is None:
        raise not_found()
    return coll


def calendar_changes(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key.startswith("@odata.") or key in ("id", "changeKey", "isDefaultCalendar", "canShare", "canEdit",
                                                 "canViewPrivateItems", "owner", "isRemovable",
                                                 "isTallyingResponses", "allowedOnlineMeetingProviders",
                                                 "defaultOnlineMeetingProvider"):
            continue
        if key == "name":
            if not isinstance(value, str) or not value.strip():
                raise bad_request("The name of a calendar must be a non-empty string.", "ErrorInvalidRequest")
            changes["name"] = value
        elif key in ("color", "hexColor"):
            if not isinstance(value, str):
                raise wrong_type(key, "Edm.String")
            changes[key] = value
        else:
            raise unknown_property(key, "calendar")
    if creating and "name" not in changes:
        raise bad_request("The name of a calendar must be a non-empty string.", "ErrorInvalidRequest")
    return changes


def create_calendar(emu: Emulator, user_id: str, body: dict[str, Any]) -> Collection:
    changes = calendar_changes(body, creating=True)
    ensure_default_calendar(emu, user_id)
    with emu.store.lock:
        for coll in emu.store.mailbox(user_id).live_collections(KIND_CALENDAR):
            if str(coll.props.get("name", "")).lower() == changes["name"].lower():
                raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        return emu.store.add_collection(user_id, KIND_CALENDAR, {**changes, "isDefault": False,
                                                                 "changeKey": new_change_key()},
                                        lambda c: _resource(user_id, c))


# --------------------------------------------------------------------------------------------- events

def find_event(emu: Emulator, user_id: str, event_id: str, calendar_id: str | None = None) -> tuple[Collection, Item]:
    found = emu.store.find(user_id, event_id)
    if found is None or found[1].kind != KIND_EVENT or (calendar_id is not None and found[0].id != calendar_id):
        raise not_found()
    return found


def _by_transaction(emu: Emulator, user_id: str, transaction_id: str) -> tuple[Collection, Item] | None:
    for coll in emu.store.mailbox(user_id).live_collections(KIND_CALENDAR):
        for item in coll.items.values():
            if item.data.get("transactionId") == transaction_id:
                return coll, item
    return None


def create_event(emu: Emulator, user_id: str, calendar_id: str, body: dict[str, Any]) -> tuple[Collection, Item]:
    with emu.store.lock:
        coll = find_calendar(emu, user_id, calendar_id)
        transaction = body.get("transactionId")
        if isinstance(transaction, str) and transaction:
            existing = _by_transaction(emu, user_id, transaction)
            if existing is not None:
                return existing
        data, extended = parse_event(body, None)
        data["iCalUId"] = new_ical_uid()
        return coll, emu.store.create_item(user_id, coll.id, KIND_EVENT, data, extended)


def _check_if_match(item: Item, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, item.change_key):
        raise GraphError(412, "ErrorIrresolvableConflict",
                         "The send or update operation could not be performed because the change key passed in the "
                         "request does not match the current change key for the item.")


def update_event(emu: Emulator, user_id: str, event_id: str, body: dict[str, Any], if_match: str | None = None,
                 calendar_id: str | None = None) -> tuple[Collection, Item]:
    with emu.store.lock:
        coll, item = find_event(emu, user_id, event_id, calendar_id)
        _check_if_match(item, if_match)
        data, extended = parse_event(body, item.data)
        return coll, emu.store.update_item(user_id, item.immutable_id, data, extended)


def delete_event(emu: Emulator, user_id: str, event_id: str, if_match: str | None = None,
                 calendar_id: str | None = None) -> None:
    with emu.store.lock:
        _, item = find_event(emu, user_id, event_id, calendar_id)
        _check_if_match(item, if_match)
        emu.store.delete_item(user_id, item.immutable_id)


def render_event(ctx: GraphContext, item: Item, select: list[str] | None, zone_name: str | None) -> dict[str, Any]:
    out = apply_select(event_json(ctx.emu, item, ctx.user.id, ctx.immutable, zone_name),
                       [s for s in select if s != "singleValueExtendedProperties"] if select is not None else None)
    extended = extended_json(item, ctx.req.query.get("$expand"))
    if extended is not None:
        out["singleValueExtendedProperties"] = extended
    return out


def calendar_param(ctx: GraphContext) -> str:
    """The calendar a route names: /calendars/{calendar_id}/... or the default one (/calendar/..., /events)."""
    if "calendar_id" in ctx.params:
        return find_calendar(ctx.emu, ctx.user.id, ctx.params["calendar_id"]).id
    return ensure_default_calendar(ctx.emu, ctx.user.id)


def _sort_key(record: dict[str, Any], name: str) -> tuple[bool, str]:
    value: Any = record
    for part in name.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value is None, str(value if value is not None else "").lower()


def order_records(records: list[dict[str, Any]], orderby: str | None) -> list[dict[str, Any]]:
    if not orderby:
        return records
    for clause in reversed([c.strip() for c in orderby.split(",") if c.strip()]):
        name, _, direction = clause.partition(" ")
        records = sorted(records, key=lambda r: _sort_key(r, name), reverse=direction.strip().lower() == "desc")
    return records


def scoped_calendar(ctx: GraphContext, scope: str) -> str | None:
    """The calendar an event route is confined to: None for /events/{id} (any calendar of the mailbox)."""
    return None if scope == "any" else calendar_param(ctx)
