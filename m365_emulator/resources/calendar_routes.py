"""Graph routes for Outlook calendars and events (/me/calendars, /me/calendar, /me/events and their /events/{id}),
over the model in calendars.py; an occurrence id reaches occurrences.py."""
from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

from m365_emulator.kernel.emulator import Emulator, GraphContext
from m365_emulator.kernel.graph import (
    GraphError,
    GraphResponse,
    apply_select,
    new_change_key,
    page_body,
    parse_select,
)
from m365_emulator.kernel.odata_filter import canonicalise_filter, compile_filter
from m365_emulator.kernel.store import Collection
from m365_emulator.resources.calendar_view import get_instances
from m365_emulator.resources.calendars import (
    CALENDAR_PROPERTIES,
    DEFAULT_PAGE,
    KIND_CALENDAR,
    calendar_changes,
    calendar_json,
    calendar_param,
    calendars,
    create_calendar,
    create_event,
    delete_event,
    ensure_default_calendar,
    find_event,
    order_records,
    render_event,
    scoped_calendar,
    update_event,
)
from m365_emulator.resources.event_json import event_json
from m365_emulator.resources.event_model import EVENT_PROPERTIES, preference_headers, response_zone
from m365_emulator.resources.occurrences import delete_occurrence, find_occurrence, instance_json, update_occurrence


# ------------------------------------------------------------------------------------------- handlers

def _events_context(ctx: GraphContext, calendar_id: str | None, suffix: str = "") -> str:
    middle = f"calendars('{quote(calendar_id, safe='')}')/events" if calendar_id else "events"
    return ctx.context_url(f"users('{ctx.user.id}')/{middle}{suffix}")


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
    changes = calendar_changes(ctx.req.json_object(), creating=False)
    with ctx.store.lock:
        coll = ctx.store.update_collection(ctx.user.id, calendar_id, {**changes, "changeKey": new_change_key()})
    return _calendar_response(ctx, coll)


def delete_calendar(ctx: GraphContext) -> GraphResponse:
    calendar_id = calendar_param(ctx)
    if calendar_id == ensure_default_calendar(ctx.emu, ctx.user.id):
        raise GraphError(400, "ErrorInvalidRequest", "Default calendar cannot be deleted.")
    ctx.store.delete_collection(ctx.user.id, calendar_id)
    return GraphResponse(204)


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


def get_event(ctx: GraphContext, scope: str = "any") -> GraphResponse:
    zone_name = response_zone(ctx)
    select = parse_select(ctx.req.query, EVENT_PROPERTIES, "event")
    occurrence = find_occurrence(ctx, ctx.params["event_id"])
    if occurrence is not None:
        record = apply_select(instance_json(ctx, occurrence, zone_name), select)
    else:
        _, item = find_event(ctx.emu, ctx.user.id, ctx.params["event_id"], scoped_calendar(ctx, scope))
        record = render_event(ctx, item, select, zone_name)
    return GraphResponse(200, {"@odata.context": _events_context(ctx, None, "/$entity"), **record},
                         preference_headers(zone_name))


def patch_event(ctx: GraphContext, scope: str = "any") -> GraphResponse:
    zone_name = response_zone(ctx)
    body = ctx.req.json_object()
    occurrence = find_occurrence(ctx, ctx.params["event_id"])
    if occurrence is not None:
        updated = update_occurrence(ctx, occurrence, body)
        record = instance_json(ctx, updated, zone_name)
    else:
        _, item = update_event(ctx.emu, ctx.user.id, ctx.params["event_id"], body, ctx.req.headers.get("if-match"),
                               scoped_calendar(ctx, scope))
        record = event_json(ctx.emu, item, ctx.user.id, ctx.immutable, zone_name)
    return GraphResponse(200, {"@odata.context": _events_context(ctx, None, "/$entity"), **record},
                         preference_headers(zone_name))


def delete_event_handler(ctx: GraphContext, scope: str = "any") -> GraphResponse:
    occurrence = find_occurrence(ctx, ctx.params["event_id"])
    if occurrence is not None:
        delete_occurrence(ctx, occurrence)
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


def register(emu: Emulator) -> None:
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
        r.add("GET", f"{base}/events/{{event_id}}/instances", partial(get_instances, scope=scope))
        r.add("GET", f"{base}/events/{{event_id}}", partial(get_event, scope=scope))
        r.add("PATCH", f"{base}/events/{{event_id}}", partial(patch_event, scope=scope))
        r.add("DELETE", f"{base}/events/{{event_id}}", partial(delete_event_handler, scope=scope))
    emu.state_parts.append(state_json)
