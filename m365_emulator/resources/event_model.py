"""Outlook's event as Graph v1.0 shows it: what a client may send (validation, defaults, Exchange's own
normalisations) and what Graph answers, for single events and series masters (event_json.py). calendars.py and
calendar_routes.py serve them, occurrences.py derives occurrences from them.

Times: `start`/`end` accept Windows and IANA zone names (timezones.py) and are kept as the wall time, the zone
and the UTC instant. Answers are in UTC unless `Prefer: outlook.timezone="..."` names a zone; then in that zone,
with `Preference-Applied`. An all-day event is a floating day range: it is answered at midnight of its dates in
whatever zone the answer uses (how Outlook answers all-day items), and placed in time, for calendar views, at
midnight of its own zone.

isAllDay, as Outlook enforces it: start and end at midnight, in the same time zone, end after start; otherwise
400 ErrorPropertyValidationFailure "At least one property failed validation." (the code and message Graph gave
for an all-day event whose end preceded its start, microsoftgraph/microsoft-graph-docs#7919). A timed event whose
end precedes its start gets the same answer.

Shapes follow Microsoft's create-event examples (user-post-events*.json, calendar-post-events*.json): defaults
isReminderOn true with 15 minutes, showAs busy, responseStatus organizer; HTML bodies kept as whole documents;
`location` given alone also fills `locations`; attendees get status "none" (nothing is ever sent to them);
a recurrence is answered in full (recurrence.py). Occurrence ids encode the series id and the original start, so
they are stable and can be resolved without storing occurrences.
"""
from __future__ import annotations

import datetime as dt
import html
import re
import secrets
from dataclasses import dataclass
from typing import Any

from m365_emulator.kernel.emulator import GraphContext
from m365_emulator.kernel.graph import (
    GraphError,
    date_time_time_zone,
    enum_value,
    item_body,
    parse_extended_properties,
    prefer_values,
    unknown_property,
    wrong_type,
)
from m365_emulator.kernel.timezones import UTC, graph_datetime, parse_local, zone
from m365_emulator.resources.recurrence import normalise as normalise_recurrence

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
INVALID = "At least one property failed validation."


def invalid_event() -> GraphError:
    return GraphError(400, "ErrorPropertyValidationFailure", INVALID)


# ---------------------------------------------------------------------------------------------- time


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
    value = date_time_time_zone(name, value)
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


def _body(value: Any) -> dict[str, str]:
    body = item_body(value)
    if body is None:
        return {"contentType": "html", "content": ""}
    kind, content = body
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
        raise wrong_type("address", "microsoft.graph.physicalAddress")
    return {k: v for k, v in value.items() if not k.startswith("@odata.")}


def parse_location(value: Any, unique_type: str) -> dict[str, Any]:
    if value is None:
        return {"displayName": "", "locationType": "default", "uniqueIdType": "unknown", "address": {},
                "coordinates": {}}
    if not isinstance(value, dict):
        raise wrong_type("location", "microsoft.graph.location")
    allowed = {"displayName", "locationType", "uniqueId", "uniqueIdType", "address", "coordinates", "locationUri",
               "locationEmailAddress"}
    for key in value:
        if not key.startswith("@odata.") and key not in allowed:
            raise unknown_property(key, "location")
    name = value.get("displayName") or ""
    out: dict[str, Any] = {"displayName": name,
                           "locationType": enum_value("locationType", value.get("locationType") or "default",
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
        raise wrong_type("attendees", "Collection(microsoft.graph.attendee)")
    out = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("emailAddress"), dict):
            raise wrong_type("attendees", "microsoft.graph.attendee")
        email = entry["emailAddress"]
        out.append({"type": enum_value("type", entry.get("type") or "required", ATTENDEE_TYPES),
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
                raise wrong_type(name, "Edm.String")
            data[name] = value if name == "transactionId" else (value or "")
        elif name in BOOLEANS or name == "isAllDay":
            if not isinstance(value, bool):
                raise wrong_type(name, "Edm.Boolean")
            data[name] = value
        elif name == "body":
            data[name] = _body(value)
        elif name in ("start", "end"):
            data[name] = parse_when(name, value).as_data()
        elif name == "importance":
            data[name] = enum_value(name, value, IMPORTANCES)
        elif name == "sensitivity":
            data[name] = enum_value(name, value, SENSITIVITIES)
        elif name == "showAs":
            data[name] = enum_value(name, value, SHOW_AS)
        elif name == "onlineMeetingProvider":
            data[name] = enum_value(name, value, MEETING_PROVIDERS)
        elif name == "categories":
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise wrong_type(name, "Collection(Edm.String)")
            data[name] = list(value)
        elif name == "reminderMinutesBeforeStart":
            if isinstance(value, bool) or not isinstance(value, int):
                raise wrong_type(name, "Edm.Int32")
            data[name] = value
        elif name == "location":
            data[name] = parse_location(value, "private")
        elif name == "locations":
            if value is None:
                value = []
            if not isinstance(value, list):
                raise wrong_type(name, "Collection(microsoft.graph.location)")
            data[name] = [parse_location(v, "unknown") for v in value]
        elif name == "attendees":
            data[name] = _attendees(value)
        elif name == "recurrence":
            data[name] = value  # normalised below, once the start's zone is known
        elif name == "singleValueExtendedProperties":
            extended = parse_extended_properties(value)
        else:
            raise unknown_property(name, "event")
    if location_given and "locations" not in body:
        loc = data["location"]
        data["locations"] = [{"displayName": loc["displayName"], "locationType": loc["locationType"],
                              "uniqueId": loc["displayName"], "uniqueIdType": "unknown"}] if loc["displayName"] else []
    data.setdefault("location", parse_location(None, "unknown"))
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


def new_ical_uid() -> str:
    return "040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(28).upper()
