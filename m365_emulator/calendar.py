"""Outlook calendars and events on Graph v1.0, for /me and /users/{id}.

Each calendar is a `store.Collection` (kind "calendar", notification resource
"/users/{uid}/calendars/{calendarId}/events"); each event an `Item` (kind "event") whose data event_model.py
defines. Every mailbox has the default "Calendar", created on first use; /me/events and /me/calendar/... reach it,
/me/events/{id} reaches an event in any calendar. Occurrences of a recurring series are not items:
calendar_view.py derives them, with stable ids (GET, PATCH → exception, DELETE → cancelled occurrence).

`transactionId`: a second POST with a transactionId already used in the mailbox answers the existing event
instead of creating another (the property exists "to avoid redundant POST operations in case of client
retries"; Outlook's exact answer to the repeat is not documented).
"""
from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

from m365_emulator.app import Emulator, GraphContext
from m365_emulator.contacts import _canonicalise_filter as canonicalise_filter  # shared, not duplicated
from m365_emulator.event_model import (
    EVENT_PROPERTIES,
    extended_json,
    new_ical_uid,
    unknown_property,
    wrong_type,
    event_json,
    parse_event,
    preference_headers,
    response_zone,
)
from m365_emulator.graph_common import (
    GraphError,
    GraphResponse,
    apply_select,
    bad_request,
    compile_filter,
    etag_matches,
    new_change_key,
    not_found,
    parse_select,
)
from m365_emulator.paging import page_body
from m365_emulator.store import Collection, Item

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
    with emu.store.lock:
        box = emu.store.mailbox(user_id)
        cid = box.extra.get(EXTRA_KEY)
        if cid is None or cid not in box.collections or box.collections[cid].deleted:
            coll = emu.store.add_collection(user_id, KIND_CALENDAR, {"name": DEFAULT_CALENDAR_NAME, "isDefault": True,
                                                                   "changeKey": new_change_key()},
                                            lambda c: _resource(user_id, c))
            box.extra[EXTRA_KEY] = cid = coll.id
        return str(cid)


def calendars(emu: Emulator, user_id: str) -> list[Collection]:
    default = ensure_default_calendar(emu, user_id)
    with emu.store.lock:
        found = list(emu.store.mailbox(user_id).live_collections(KIND_CALENDAR))
    return sorted(found, key=lambda c: (c.id != default, c.created, c.id))


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


def _calendar_changes(body: dict[str, Any], creating: bool) -> dict[str, Any]:
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
    changes = _calendar_changes(body, creating=True)
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


# ------------------------------------------------------------------------------------------- handlers

def _events_context(ctx: GraphContext, calendar_id: str | None, suffix: str = "") -> str:
    middle = f"calendars('{quote(calendar_id, safe='')}')/events" if calendar_id else "events"
    return ctx.context_url(f"users('{ctx.user.id}')/{middle}{suffix}")


def calendar_param(ctx: GraphContext) -> str:
    """The calendar a route names: /calendars/{calendar_id}/... or the default one (/calendar/..., /events)."""
    if "calendar_id" in ctx.params:
        return find_calendar(ctx.emu, ctx.user.id, ctx.params["calendar_id"]).id
    return ensure_default_calendar(ctx.emu, ctx.user.id)


def get_calendars(ctx: GraphContext) -> GraphResponse:
    select = parse_select(ctx.req.query, CALENDAR_PROPERTIES, "calendar")
    records = [calendar_json(ctx.emu, c, ctx.user.id) for c in calendars(ctx.emu, ctx.user.id)]
    if "$filter" in ctx.req.query:
        predicate = compile_filter(ctx.req.query["$filter"])
        records = [r for r in records if predicate(r, {})]
    records = [apply_select(r, select, ("id",)) for r in records]
    return GraphResponse(200, page_body(ctx.req.query, ctx.req.headers, records,
                                        ctx.context_url(f"users('{ctx.user.id}')/calendars"), ctx.url("/calendars"),
                                        DEFAULT_PAGE))


def _calendar_response(ctx: GraphContext, coll: Collection, status: int = 200) -> GraphResponse:
    select = parse_select(ctx.req.query, CALENDAR_PROPERTIES, "calendar") if status == 200 else None
    return GraphResponse(status, {"@odata.context": ctx.context_url(f"users('{ctx.user.id}')/calendars/$entity"),
                                  **apply_select(calendar_json(ctx.emu, coll, ctx.user.id), select, ("id",))})


def post_calendar(ctx: GraphContext) -> GraphResponse:
    return _calendar_response(ctx, create_calendar(ctx.emu, ctx.user.id, ctx.req.json_object()), 201)


def get_calendar(ctx: GraphContext) -> GraphResponse:
    coll = ctx.store.collection(ctx.user.id, calendar_param(ctx), KIND_CALENDAR)
    assert coll is not None
    return _calendar_response(ctx, coll)


def patch_calendar(ctx: GraphContext) -> GraphResponse:
    calendar_id = calendar_param(ctx)
    changes = _calendar_changes(ctx.req.json_object(), creating=False)
    with ctx.store.lock:
        coll = ctx.store.update_collection(ctx.user.id, calendar_id, {**changes, "changeKey": new_change_key()})
    return _calendar_response(ctx, coll)


def delete_calendar(ctx: GraphContext) -> GraphResponse:
    calendar_id = calendar_param(ctx)
    if calendar_id == ensure_default_calendar(ctx.emu, ctx.user.id):
        raise GraphError(400, "ErrorInvalidRequest", "Default calendar cannot be deleted.")
    ctx.store.delete_collection(ctx.user.id, calendar_id)
    return GraphResponse(204)


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


def get_events(ctx: GraphContext) -> GraphResponse:
    calendar_id = calendar_param(ctx)
    zone_name = response_zone(ctx)
    select = parse_select(ctx.req.query, EVENT_PROPERTIES, "event")
    with ctx.store.lock:
        coll = ctx.store.collection(ctx.user.id, calendar_id, KIND_CALENDAR)
        assert coll is not None
        items = sorted(coll.items.values(), key=lambda i: (i.created, i.immutable_id))
        records = [event_json(ctx.emu, i, ctx.user.id, ctx.immutable, zone_name) for i in items]
        by_id = {r["id"]: i for r, i in zip(records, items)}
    if "$filter" in ctx.req.query:
        # Filters may test singleValueExtendedProperties (how a client finds the event it tagged with its own id).
        predicate = compile_filter(canonicalise_filter(ctx.req.query["$filter"]))
        records = [r for r in records if predicate(
            {**r, "singleValueExtendedProperties": [{"id": k, "value": v} for k, v in by_id[r["id"]].extended.items()]},
            {})]
    records = order_records(records, ctx.req.query.get("$orderby"))
    records = [render_event(ctx, by_id[r["id"]], select, zone_name) for r in records]
    link = ctx.url(f"/calendars/{calendar_id}/events" if "calendar_id" in ctx.params else "/events")
    body = page_body(ctx.req.query, ctx.req.headers, records,
                     _events_context(ctx, ctx.params.get("calendar_id")), link, DEFAULT_PAGE)
    return GraphResponse(200, body, preference_headers(zone_name))


def post_event(ctx: GraphContext) -> GraphResponse:
    calendar_id = calendar_param(ctx)
    zone_name = response_zone(ctx)
    _, item = create_event(ctx.emu, ctx.user.id, calendar_id, ctx.req.json_object())
    body = {"@odata.context": _events_context(ctx, ctx.params.get("calendar_id"), "/$entity"),
            **event_json(ctx.emu, item, ctx.user.id, ctx.immutable, zone_name)}
    return GraphResponse(201, body, preference_headers(zone_name))


def scoped_calendar(ctx: GraphContext, scope: str) -> str | None:
    """The calendar an event route is confined to: None for /events/{id} (any calendar of the mailbox)."""
    return None if scope == "any" else calendar_param(ctx)


def get_event(ctx: GraphContext, scope: str = "any") -> GraphResponse:
    from m365_emulator import calendar_view
    zone_name = response_zone(ctx)
    select = parse_select(ctx.req.query, EVENT_PROPERTIES, "event")
    occurrence = calendar_view.find_occurrence(ctx, ctx.params["event_id"])
    if occurrence is not None:
        record = apply_select(calendar_view.instance_json(ctx, occurrence, zone_name), select)
    else:
        _, item = find_event(ctx.emu, ctx.user.id, ctx.params["event_id"], scoped_calendar(ctx, scope))
        record = render_event(ctx, item, select, zone_name)
    return GraphResponse(200, {"@odata.context": _events_context(ctx, None, "/$entity"), **record},
                         preference_headers(zone_name))


def patch_event(ctx: GraphContext, scope: str = "any") -> GraphResponse:
    from m365_emulator import calendar_view
    zone_name = response_zone(ctx)
    body = ctx.req.json_object()
    occurrence = calendar_view.find_occurrence(ctx, ctx.params["event_id"])
    if occurrence is not None:
        updated = calendar_view.update_occurrence(ctx, occurrence, body)
        record = calendar_view.instance_json(ctx, updated, zone_name)
    else:
        _, item = update_event(ctx.emu, ctx.user.id, ctx.params["event_id"], body, ctx.req.headers.get("if-match"),
                               scoped_calendar(ctx, scope))
        record = event_json(ctx.emu, item, ctx.user.id, ctx.immutable, zone_name)
    return GraphResponse(200, {"@odata.context": _events_context(ctx, None, "/$entity"), **record},
                         preference_headers(zone_name))


def delete_event_handler(ctx: GraphContext, scope: str = "any") -> GraphResponse:
    from m365_emulator import calendar_view
    occurrence = calendar_view.find_occurrence(ctx, ctx.params["event_id"])
    if occurrence is not None:
        calendar_view.delete_occurrence(ctx, occurrence)
    else:
        delete_event(ctx.emu, ctx.user.id, ctx.params["event_id"], ctx.req.headers.get("if-match"),
                     scoped_calendar(ctx, scope))
    return GraphResponse(204)


# ---------------------------------------------------------------------------------------------- state

def state_json(emu: Emulator, user_id: str) -> dict[str, Any]:
    out = []
    for coll in calendars(emu, user_id):
        with emu.store.lock:
            events = [{**event_json(emu, i, user_id, False, None), "immutableId": i.immutable_id}
                      for i in sorted(coll.items.values(), key=lambda i: (i.created, i.immutable_id))]
        out.append({**calendar_json(emu, coll, user_id), "changeSeq": coll.seq, "events": events})
    return {"calendars": out}


def install(emu: Emulator) -> None:
    from m365_emulator import calendar_view
    r = emu.router
    r.add("GET", "/calendars", get_calendars)
    r.add("POST", "/calendars", post_calendar)
    r.add("GET", "/calendar", get_calendar)
    r.add("PATCH", "/calendar", patch_calendar)
    for base in ("/calendars/{calendar_id}",):
        r.add("GET", base, get_calendar)
        r.add("PATCH", base, patch_calendar)
        r.add("DELETE", base, delete_calendar)
    for base, scope in (("", "any"), ("/calendar", "default"), ("/calendars/{calendar_id}", "named")):
        r.add("GET", f"{base}/events", get_events)
        r.add("POST", f"{base}/events", post_event)
        r.add("GET", f"{base}/events/{{event_id}}/instances", partial(calendar_view.get_instances, scope=scope))
        r.add("GET", f"{base}/events/{{event_id}}", partial(get_event, scope=scope))
        r.add("PATCH", f"{base}/events/{{event_id}}", partial(patch_event, scope=scope))
        r.add("DELETE", f"{base}/events/{{event_id}}", partial(delete_event_handler, scope=scope))
    calendar_view.install(emu)
    emu.state_parts.append(state_json)
    from m365_emulator.ui_todo_calendar import install_calendar
    install_calendar(emu)
