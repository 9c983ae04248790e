"""Outlook calendars and events on Graph v1.0, for /me and /users/{id}.

Each calendar is a `store.Collection` (kind "calendar", notification resource
"/users/{uid}/calendars/{calendarId}/events"); each event an `Item` (kind "event"). Every mailbox has the default
"Calendar", created on first use; /me/events and /me/calendar/... reach it, /me/events/{id} reaches an event in
any calendar. Occurrences of a recurring series are not items: calendar_view.py derives them, with ids that
encode the series id and the original start, so they are stable and addressable (GET, PATCH → exception,
DELETE → cancelled occurrence).

Times: `start`/`end` accept Windows and IANA zone names (timezones.py) and are kept as the wall time, the zone
and the UTC instant. Answers are in UTC unless `Prefer: outlook.timezone="..."` names a zone; then in that zone,
with `Preference-Applied`. An all-day event is a floating day range: it is answered at midnight of its dates in
whatever zone the answer uses (how Outlook answers all-day items), and placed in time, for calendar views, at
midnight of its own zone.

isAllDay, as Outlook enforces it: start and end at midnight, in the same time zone, end after start; otherwise
400 ErrorPropertyValidationFailure "At least one property failed validation." (the code and message Graph gave
for an all-day event whose end preceded its start, microsoftgraph/microsoft-graph-docs#7919). A timed event whose
end precedes its start gets the same answer.

Attendees are stored and answered (status "none"), and nothing is ever sent to them. `transactionId`: a second
POST with a transactionId already used in the mailbox answers the existing event instead of creating another
(the property exists "to avoid redundant POST operations in case of client retries"; Outlook's exact answer to
the repeat is not documented).
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import re
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote

from m365_emulator.app import Emulator, GraphContext
from m365_emulator.graph_common import (
    GraphError,
    GraphResponse,
    apply_select,
    bad_request,
    compile_filter,
    etag,
    etag_matches,
    new_change_key,
    not_found,
    parse_extended_properties,
    parse_select,
    prefer_values,
)
from m365_emulator.paging import page_body
from m365_emulator.recurrence import normalise as normalise_recurrence
from m365_emulator.store import Collection, Item
from m365_emulator.timezones import UTC, graph_datetime, parse_local, zone

KIND_CALENDAR = "calendar"
KIND_EVENT = "event"
DEFAULT_CALENDAR_NAME = "Calendar"
DEFAULT_PAGE = 10
EXTRA_KEY = "calendar_default"
OCCURRENCE_PREFIX = "AAMkAGOc"  # never the start of a stored item id (those begin "AAMkAD")

IMPORTANCES = ("low", "normal", "high")
SENSITIVITIES = ("normal", "personal", "private", "confidential")
SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
ATTENDEE_TYPES = ("required", "optional", "resource")
MEETING_PROVIDERS = ("unknown", "skypeForBusiness", "skypeForConsumer", "teamsForBusiness")
STRINGS = ("subject", "transactionId")
BOOLEANS = ("isReminderOn", "allowNewTimeProposals", "isOnlineMeeting", "responseRequested", "hideAttendees")
READ_ONLY = ("id", "createdDateTime", "lastModifiedDateTime", "changeKey", "iCalUId", "uid", "webLink", "type",
             "seriesMasterId", "organizer", "responseStatus", "bodyPreview", "originalStartTimeZone",
             "originalEndTimeZone", "hasAttachments", "isOrganizer", "isCancelled", "isDraft", "onlineMeeting",
             "onlineMeetingUrl", "occurrenceId", "originalStart", "calendar")
# The order of Microsoft's create-event example, so answers read like Graph's.
EVENT_PROPERTIES = ("id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "transactionId",
                    "originalStartTimeZone", "originalEndTimeZone", "iCalUId", "uid", "reminderMinutesBeforeStart",
                    "isReminderOn", "hasAttachments", "subject", "bodyPreview", "importance", "sensitivity",
                    "isAllDay", "isCancelled", "isDraft", "isOrganizer", "responseRequested", "seriesMasterId",
                    "showAs", "type", "webLink", "onlineMeetingUrl", "isOnlineMeeting", "onlineMeetingProvider",
                    "onlineMeeting", "allowNewTimeProposals", "hideAttendees", "responseStatus", "body", "start",
                    "end", "location", "locations", "recurrence", "attendees", "organizer", "originalStart",
                    "singleValueExtendedProperties")
# What a PATCH of one occurrence may change (it then becomes an exception of its series).
EXCEPTION_FIELDS = ("subject", "body", "start", "end", "location", "locations", "importance", "sensitivity",
                    "showAs", "categories", "isReminderOn", "reminderMinutesBeforeStart")
CALENDAR_PROPERTIES = ("id", "name", "color", "hexColor", "isDefaultCalendar", "changeKey", "canShare",
                       "canViewPrivateItems", "canEdit", "allowedOnlineMeetingProviders",
                       "defaultOnlineMeetingProvider", "isTallyingResponses", "isRemovable", "owner")
INVALID = "At least one property failed validation."


def invalid_event() -> GraphError:
    return GraphError(400, "ErrorPropertyValidationFailure", INVALID)


# ---------------------------------------------------------------------------------------------- time

def iso7(ts: float) -> str:
    return graph_datetime(dt.datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)) + "Z"


@dataclass(frozen=True)
class When:
    """One end of an event as stored: wall time, its zone's name as the client spelled it, and the instant."""

    local: dt.datetime
    zone: str
    utc: dt.datetime

    def as_data(self) -> dict[str, str]:
        return {"local": self.local.isoformat(), "zone": self.zone, "utc": self.utc.isoformat()}

    @staticmethod
    def from_data(data: dict[str, str]) -> When:
        return When(dt.datetime.fromisoformat(data["local"]), data["zone"], dt.datetime.fromisoformat(data["utc"]))


def parse_when(name: str, value: Any) -> When:
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise bad_request(f"Cannot convert the literal value of property '{name}' to the expected type "
                          "'microsoft.graph.dateTimeTimeZone'.", "RequestBodyRead")
    extra = set(value) - {"dateTime", "timeZone", "@odata.type"}
    if extra:
        raise _unknown(sorted(extra)[0], "dateTimeTimeZone")
    zone_name = str(value.get("timeZone") or "UTC").strip()
    tz = zone(zone_name)
    local, offset = parse_local(value["dateTime"])
    if offset is not None:  # an explicit offset fixes the instant; keep the wall time in the named zone
        instant = local.replace(tzinfo=offset).astimezone(UTC)
        local = instant.astimezone(tz).replace(tzinfo=None)
    else:
        instant = local.replace(tzinfo=tz).astimezone(UTC)
    return When(local, zone_name, instant)


def response_zone(ctx: GraphContext) -> str | None:
    """The zone named by `Prefer: outlook.timezone`, checked, or None for UTC."""
    name = prefer_values(ctx.req.headers).get("outlook.timezone")
    if not name:
        return None
    zone(name)
    return name


def preference_headers(zone_name: str | None) -> dict[str, str]:
    return {"Preference-Applied": f'outlook.timezone="{zone_name}"'} if zone_name else {}


def time_json(instant: dt.datetime, zone_name: str | None) -> dict[str, str]:
    name = zone_name or "UTC"
    return {"dateTime": graph_datetime(instant.astimezone(zone(name)).replace(tzinfo=None)), "timeZone": name}


def all_day_json(day: dt.date, zone_name: str | None) -> dict[str, str]:
    return {"dateTime": graph_datetime(dt.datetime.combine(day, dt.time())), "timeZone": zone_name or "UTC"}


# ---------------------------------------------------------------------------------------- validation

def _unknown(name: str, type_name: str) -> GraphError:
    return bad_request(f"The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to "
                       "only use property names that are defined by the type or mark the type as open type.",
                       "RequestBodyRead")


def _wrong_type(name: str, expected: str) -> GraphError:
    return bad_request(f"Cannot convert the literal value of property '{name}' to the expected type '{expected}'.",
                       "RequestBodyRead")


def _enum(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if isinstance(value, str):
        for candidate in allowed:
            if candidate.lower() == value.lower():
                return candidate
    raise bad_request(f"Requested value '{value}' was not found.", "RequestBodyRead")


def _body(value: Any) -> dict[str, str]:
    if value is None:
        return {"contentType": "html", "content": ""}
    if not isinstance(value, dict):
        raise _wrong_type("body", "microsoft.graph.itemBody")
    extra = set(value) - {"content", "contentType", "@odata.type"}
    if extra:
        raise _unknown(sorted(extra)[0], "itemBody")
    content = value.get("content") or ""
    if not isinstance(content, str):
        raise _wrong_type("content", "Edm.String")
    kind = _enum("contentType", value.get("contentType") or "text", ("text", "html"))
    if kind == "html" and content and "<html" not in content.lower():
        # Exchange keeps HTML bodies as whole documents (Microsoft's create examples answer this shape).
        content = f"<html>\r\n<head>\r\n</head>\r\n<body>\r\n{content}\r\n</body>\r\n</html>\r\n"
    return {"contentType": kind, "content": content}


def body_preview(body: dict[str, str]) -> str:
    text = body.get("content", "")
    if body.get("contentType") == "html":
        text = re.sub(r"(?is)<(head|style|script)\b.*?</\1>", " ", text)
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return re.sub(r"\s+", " ", text).strip()[:255]


def _address(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong_type("address", "microsoft.graph.physicalAddress")
    return {k: v for k, v in value.items() if not k.startswith("@odata.")}


def _location(value: Any, unique_type: str) -> dict[str, Any]:
    if value is None:
        return {"displayName": "", "locationType": "default", "uniqueIdType": "unknown", "address": {},
                "coordinates": {}}
    if not isinstance(value, dict):
        raise _wrong_type("location", "microsoft.graph.location")
    allowed = {"displayName", "locationType", "uniqueId", "uniqueIdType", "address", "coordinates", "locationUri",
               "locationEmailAddress"}
    for key in value:
        if not key.startswith("@odata.") and key not in allowed:
            raise _unknown(key, "location")
    name = value.get("displayName") or ""
    out: dict[str, Any] = {"displayName": name,
                           "locationType": _enum("locationType", value.get("locationType") or "default",
                                                 ("default", "conferenceRoom", "homeAddress", "businessAddress",
                                                  "geoCoordinates", "streetAddress", "hotel", "restaurant",
                                                  "localBusiness", "postalAddress"))}
    if value.get("locationUri"):
        out["locationUri"] = value["locationUri"]
    if value.get("locationEmailAddress"):
        out["locationEmailAddress"] = value["locationEmailAddress"]
    # The event's location, and a place with an address, get a private unique id as in Microsoft's examples;
    # the examples disagree on whether other entries of `locations` carry their uniqueId, so they all do.
    out["uniqueId"] = value.get("uniqueId") or name
    out["uniqueIdType"] = "private" if unique_type == "private" or value.get("address") else "unknown"
    if value.get("address"):
        out["address"] = _address(value["address"])
    if value.get("coordinates"):
        out["coordinates"] = dict(value["coordinates"])
    return out


def _attendees(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong_type("attendees", "Collection(microsoft.graph.attendee)")
    out = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("emailAddress"), dict):
            raise _wrong_type("attendees", "microsoft.graph.attendee")
        email = entry["emailAddress"]
        out.append({"type": _enum("type", entry.get("type") or "required", ATTENDEE_TYPES),
                    "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                    "emailAddress": {"name": email.get("name") or email.get("address"),
                                     "address": email.get("address")}})
    return out


def parse_event(body: dict[str, Any], current: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, str] | None]:
    """A POST (current None) or PATCH body merged over the stored event: (data, extended properties or None)."""
    data: dict[str, Any] = dict(current) if current is not None else {
        "subject": "", "body": {"contentType": "html", "content": ""}, "importance": "normal",
        "sensitivity": "normal", "showAs": "busy", "categories": [], "isReminderOn": True,
        "reminderMinutesBeforeStart": 15, "attendees": [], "allowNewTimeProposals": True, "transactionId": None,
        "isOnlineMeeting": False, "onlineMeetingProvider": "unknown", "responseRequested": True,
        "hideAttendees": False, "isAllDay": False, "recurrence": None, "exdates": [], "exceptions": {}}
    extended: dict[str, str] | None = None
    location_given = "location" in body
    for name, value in body.items():
        if name in READ_ONLY or name.startswith("@odata.") or "@odata." in name:
            continue
        if name in STRINGS:
            if value is not None and not isinstance(value, str):
                raise _wrong_type(name, "Edm.String")
            data[name] = value if name == "transactionId" else (value or "")
        elif name in BOOLEANS or name == "isAllDay":
            if not isinstance(value, bool):
                raise _wrong_type(name, "Edm.Boolean")
            data[name] = value
        elif name == "body":
            data[name] = _body(value)
        elif name in ("start", "end"):
            data[name] = parse_when(name, value).as_data()
        elif name == "importance":
            data[name] = _enum(name, value, IMPORTANCES)
        elif name == "sensitivity":
            data[name] = _enum(name, value, SENSITIVITIES)
        elif name == "showAs":
            data[name] = _enum(name, value, SHOW_AS)
        elif name == "onlineMeetingProvider":
            data[name] = _enum(name, value, MEETING_PROVIDERS)
        elif name == "categories":
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _wrong_type(name, "Collection(Edm.String)")
            data[name] = list(value)
        elif name == "reminderMinutesBeforeStart":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _wrong_type(name, "Edm.Int32")
            data[name] = value
        elif name == "location":
            data[name] = _location(value, "private")
        elif name == "locations":
            if value is None:
                value = []
            if not isinstance(value, list):
                raise _wrong_type(name, "Collection(microsoft.graph.location)")
            data[name] = [_location(v, "unknown") for v in value]
        elif name == "attendees":
            data[name] = _attendees(value)
        elif name == "recurrence":
            data[name] = value  # normalised below, once the start's zone is known
        elif name == "singleValueExtendedProperties":
            extended = parse_extended_properties(value)
        else:
            raise _unknown(name, "event")
    if location_given and "locations" not in body:
        loc = data["location"]
        data["locations"] = [{"displayName": loc["displayName"], "locationType": loc["locationType"],
                              "uniqueId": loc["displayName"], "uniqueIdType": "unknown"}] if loc["displayName"] else []
    data.setdefault("location", _location(None, "unknown"))
    data.setdefault("locations", [])
    if "start" not in data or "end" not in data:
        raise invalid_event()
    if "recurrence" in body:
        data["recurrence"] = normalise_recurrence(body["recurrence"], data["start"]["zone"])
    if data["isOnlineMeeting"] and data["onlineMeetingProvider"] == "teamsForBusiness":
        data.setdefault("onlineMeeting", _online_meeting())
    elif not data["isOnlineMeeting"]:
        data.pop("onlineMeeting", None)
    _check_times(data)
    if current is not None and any(k in body for k in ("start", "end", "recurrence", "isAllDay")):
        # Outlook drops a series' exceptions and cancelled occurrences when its timing changes.
        data["exdates"], data["exceptions"] = [], {}
    return data, extended


def _check_times(data: dict[str, Any]) -> None:
    start, end = When.from_data(data["start"]), When.from_data(data["end"])
    if data.get("isAllDay"):
        if start.local.time() != dt.time() or end.local.time() != dt.time():
            raise invalid_event()
        if zone(start.zone) != zone(end.zone) or end.local.date() <= start.local.date():
            raise invalid_event()
    elif end.utc < start.utc:
        raise invalid_event()


def _online_meeting() -> dict[str, str]:
    thread = secrets.token_urlsafe(24)
    return {"joinUrl": f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{thread}%40thread.v2/0",
            "conferenceId": str(secrets.randbelow(10 ** 9)).zfill(9), "tollNumber": "+1 425 555 0123"}


def _ical_uid() -> str:
    return "040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(28).upper()


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
                raise _wrong_type(key, "Edm.String")
            changes[key] = value
        else:
            raise _unknown(key, "calendar")
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

def occurrence_id(series_id: str, original_start: dt.datetime) -> str:
    raw = f"{series_id}|{original_start.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}".encode()
    return OCCURRENCE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_occurrence_id(any_id: str) -> tuple[str, dt.datetime] | None:
    if not any_id.startswith(OCCURRENCE_PREFIX):
        return None
    text = any_id[len(OCCURRENCE_PREFIX):]
    try:
        series, _, when = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode().partition("|")
        return series, dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (ValueError, UnicodeDecodeError):
        return None


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
        data["iCalUId"] = _ical_uid()
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


def event_json(emu: Emulator, item: Item, user_id: str, immutable: bool, zone_name: str | None) -> dict[str, Any]:
    """The whole event (a single instance or a series master) as Graph answers it."""
    data = item.data
    event_id = item.reported_id(immutable)
    user = emu.core.users.get(user_id)
    start, end = When.from_data(data["start"]), When.from_data(data["end"])
    if data.get("isAllDay"):
        start_json, end_json = all_day_json(start.local.date(), zone_name), all_day_json(end.local.date(), zone_name)
    else:
        start_json, end_json = time_json(start.utc, zone_name), time_json(end.utc, zone_name)
    organizer = {"emailAddress": {"name": user.display_name if user else None,
                                  "address": user.user_principal_name if user else None}}
    out: dict[str, Any] = {
        "@odata.etag": etag(item.change_key),
        "id": event_id,
        "createdDateTime": iso7(item.created),
        "lastModifiedDateTime": iso7(item.last_modified),
        "changeKey": item.change_key,
        "categories": list(data.get("categories") or []),
        "transactionId": data.get("transactionId"),
        "originalStartTimeZone": start.zone,
        "originalEndTimeZone": end.zone,
        "iCalUId": data.get("iCalUId"),
        "uid": data.get("iCalUId"),
        "reminderMinutesBeforeStart": data.get("reminderMinutesBeforeStart", 15),
        "isReminderOn": data.get("isReminderOn", True),
        "hasAttachments": False,
        "subject": data.get("subject", ""),
        "bodyPreview": body_preview(data.get("body") or {}),
        "importance": data.get("importance", "normal"),
        "sensitivity": data.get("sensitivity", "normal"),
        "isAllDay": bool(data.get("isAllDay")),
        "isCancelled": False,
        "isDraft": False,
        "isOrganizer": True,
        "responseRequested": data.get("responseRequested", True),
        "seriesMasterId": None,
        "showAs": data.get("showAs", "busy"),
        "type": "seriesMaster" if data.get("recurrence") else "singleInstance",
        "webLink": f"https://outlook.office365.com/owa/?itemid={quote(event_id, safe='')}&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": bool(data.get("isOnlineMeeting")),
        "onlineMeetingProvider": data.get("onlineMeetingProvider", "unknown"),
        "onlineMeeting": data.get("onlineMeeting"),
        "allowNewTimeProposals": data.get("allowNewTimeProposals", True),
        "hideAttendees": data.get("hideAttendees", False),
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "body": dict(data.get("body") or {}),
        "start": start_json,
        "end": end_json,
        "location": dict(data.get("location") or _location(None, "unknown")),
        "locations": [dict(loc) for loc in data.get("locations") or []],
        "recurrence": data.get("recurrence"),
        "attendees": [dict(a) for a in data.get("attendees") or []],
        "organizer": organizer,
    }
    return out


def _extended_json(item: Item, expand: str | None) -> list[dict[str, str]] | None:
    if expand is None or not expand.strip().lower().startswith("singlevalueextendedproperties"):
        return None
    props = [{"id": k, "value": v} for k, v in item.extended.items()]
    match = re.search(r"\$filter\s*=\s*(.+)\)\s*$", expand, re.DOTALL)
    if match:
        predicate = compile_filter(match.group(1))
        props = [p for p in props if predicate(p, {})]
    return props


def render_event(ctx: GraphContext, item: Item, select: list[str] | None, zone_name: str | None) -> dict[str, Any]:
    out = apply_select(event_json(ctx.emu, item, ctx.user.id, ctx.immutable, zone_name),
                       [s for s in select if s != "singleValueExtendedProperties"] if select is not None else None)
    extended = _extended_json(item, ctx.req.query.get("$expand"))
    if extended is not None:
        out["singleValueExtendedProperties"] = extended
    return out


# ------------------------------------------------------------------------------------------- handlers

def _events_context(ctx: GraphContext, calendar_id: str | None, suffix: str = "") -> str:
    middle = f"calendars('{quote(calendar_id, safe='')}')/events" if calendar_id else "events"
    return ctx.context_url(f"users('{ctx.user.id}')/{middle}{suffix}")


def _calendar_param(ctx: GraphContext) -> str:
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
    coll = ctx.store.collection(ctx.user.id, _calendar_param(ctx), KIND_CALENDAR)
    assert coll is not None
    return _calendar_response(ctx, coll)


def patch_calendar(ctx: GraphContext) -> GraphResponse:
    calendar_id = _calendar_param(ctx)
    changes = _calendar_changes(ctx.req.json_object(), creating=False)
    with ctx.store.lock:
        coll = ctx.store.update_collection(ctx.user.id, calendar_id, {**changes, "changeKey": new_change_key()})
    return _calendar_response(ctx, coll)


def delete_calendar(ctx: GraphContext) -> GraphResponse:
    calendar_id = _calendar_param(ctx)
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
    calendar_id = _calendar_param(ctx)
    zone_name = response_zone(ctx)
    select = parse_select(ctx.req.query, EVENT_PROPERTIES, "event")
    with ctx.store.lock:
        coll = ctx.store.collection(ctx.user.id, calendar_id, KIND_CALENDAR)
        assert coll is not None
        items = sorted(coll.items.values(), key=lambda i: (i.created, i.immutable_id))
        records = [event_json(ctx.emu, i, ctx.user.id, ctx.immutable, zone_name) for i in items]
        by_id = {r["id"]: i for r, i in zip(records, items)}
    if "$filter" in ctx.req.query:
        predicate = compile_filter(ctx.req.query["$filter"])
        records = [r for r in records if predicate(r, {})]
    records = order_records(records, ctx.req.query.get("$orderby"))
    records = [render_event(ctx, by_id[r["id"]], select, zone_name) for r in records]
    link = ctx.url(f"/calendars/{calendar_id}/events" if "calendar_id" in ctx.params else "/events")
    body = page_body(ctx.req.query, ctx.req.headers, records,
                     _events_context(ctx, ctx.params.get("calendar_id")), link, DEFAULT_PAGE)
    return GraphResponse(200, body, preference_headers(zone_name))


def post_event(ctx: GraphContext) -> GraphResponse:
    calendar_id = _calendar_param(ctx)
    zone_name = response_zone(ctx)
    _, item = create_event(ctx.emu, ctx.user.id, calendar_id, ctx.req.json_object())
    body = {"@odata.context": _events_context(ctx, ctx.params.get("calendar_id"), "/$entity"),
            **event_json(ctx.emu, item, ctx.user.id, ctx.immutable, zone_name)}
    return GraphResponse(201, body, preference_headers(zone_name))


def _scoped_calendar(ctx: GraphContext, scope: str) -> str | None:
    """The calendar an event route is confined to: None for /events/{id} (any calendar of the mailbox)."""
    return None if scope == "any" else _calendar_param(ctx)


def get_event(ctx: GraphContext, scope: str = "any") -> GraphResponse:
    from m365_emulator import calendar_view
    zone_name = response_zone(ctx)
    select = parse_select(ctx.req.query, EVENT_PROPERTIES, "event")
    occurrence = calendar_view.find_occurrence(ctx, ctx.params["event_id"])
    if occurrence is not None:
        record = apply_select(calendar_view.instance_json(ctx, occurrence, zone_name), select)
    else:
        _, item = find_event(ctx.emu, ctx.user.id, ctx.params["event_id"], _scoped_calendar(ctx, scope))
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
                               _scoped_calendar(ctx, scope))
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
                     _scoped_calendar(ctx, scope))
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

