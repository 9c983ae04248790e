"""How an event is answered: its Graph JSON (times in the requested zone, organizer, body preview, extended
properties on $expand) and the derived ids of occurrences of a series."""
from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any
from urllib.parse import quote

from m365_emulator.kernel.emulator import Emulator
from m365_emulator.kernel.graph import etag
from m365_emulator.kernel.odata_filter import canonicalise_filter, compile_filter
from m365_emulator.kernel.store import Item
from m365_emulator.kernel.timezones import UTC, iso7
from m365_emulator.resources.event_model import (
    OCCURRENCE_PREFIX,
    When,
    all_day_json,
    body_preview,
    parse_location,
    time_json,
)


# ------------------------------------------------------------------------------------------ occurrence ids

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


# ---------------------------------------------------------------------------------------------- answers

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
        "location": dict(data.get("location") or parse_location(None, "unknown")),
        "locations": [dict(loc) for loc in data.get("locations") or []],
        "recurrence": data.get("recurrence"),
        "attendees": [dict(a) for a in data.get("attendees") or []],
        "organizer": organizer,
    }
    return out


def extended_json(item: Item, expand: str | None) -> list[dict[str, str]] | None:
    if expand is None or not expand.strip().lower().startswith("singlevalueextendedproperties"):
        return None
    props = [{"id": k, "value": v} for k, v in item.extended.items()]
    match = re.search(r"\$filter\s*=\s*(.+)\)\s*$", expand, re.DOTALL)
    if match:
        predicate = compile_filter(canonicalise_filter(match.group(1)))  # extended-property ids compare canonically
        props = [p for p in props if predicate(p, {})]
    return props
