"""Occurrences of recurring series, derived from the series master: expansion into instances within a window,
and reading, editing (into an exception) or cancelling one occurrence by its derived id.

A single event is one instance; a series master is not shown in a view, its occurrences are
(type "occurrence", or "exception" once an occurrence was edited), each with `seriesMasterId`, `originalStart`
and an id derived from the series id and the original start (event_model.occurrence_id), so an occurrence keeps its
id across rounds and requests. An instance belongs to a window when it overlaps it (start < window end and end >
window start; a zero-length event when it starts inside)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from m365_emulator.kernel.emulator import Emulator, GraphContext
from m365_emulator.kernel.graph import bad_request, not_found
from m365_emulator.kernel.store import Item
from m365_emulator.kernel.timezones import UTC, is_known, zone
from m365_emulator.resources.calendars import KIND_CALENDAR, find_event
from m365_emulator.resources.event_json import event_json, occurrence_id, parse_occurrence_id
from m365_emulator.resources.event_model import (
    EXCEPTION_FIELDS,
    When,
    all_day_json,
    body_preview,
    parse_event,
    time_json,
)
from m365_emulator.resources.recurrence import occurrence_dates


def utc_iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------ instances

@dataclass(frozen=True)
class Instance:
    calendar_id: str
    master: Item
    original_start: dt.datetime | None  # UTC; None for a single instance
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    all_day: tuple[dt.date, dt.date] | None  # the floating dates of an all-day instance
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity independent of the id kind a request prefers: series immutable id + original start."""
        return self.master.immutable_id + ("|" + utc_iso(self.original_start) if self.original_start else "")

    @property
    def version(self) -> str:
        # Exceptions and cancellations live in the master, so its change key versions every instance.
        return self.master.change_key


def _overlaps(start: dt.datetime, end: dt.datetime, window: tuple[dt.datetime, dt.datetime]) -> bool:
    if start == end:
        return window[0] <= start < window[1]
    return start < window[1] and end > window[0]


def _series_zone(data: dict[str, Any]) -> dt.tzinfo:
    name = data["recurrence"]["range"].get("recurrenceTimeZone") or data["start"]["zone"]
    return zone(name if is_known(name) else data["start"]["zone"])


def _span(data: dict[str, Any]) -> tuple[dt.datetime, dt.datetime, tuple[dt.date, dt.date] | None]:
    """An event's (or exception's) UTC span; all-day items are placed at midnight of their own zone."""
    start, end = When.from_data(data["start"]), When.from_data(data["end"])
    if data.get("isAllDay"):
        tz = zone(start.zone)
        first, last = start.local.date(), end.local.date()
        return (dt.datetime.combine(first, dt.time(), tz).astimezone(UTC),
                dt.datetime.combine(last, dt.time(), tz).astimezone(UTC), (first, last))
    return start.utc, end.utc, None


def _occurrence(calendar_id: str, master: Item, day: dt.date) -> Instance | None:
    """The occurrence of `master` on `day` (a date of its pattern), or None when it was cancelled."""
    data = master.data
    tz = _series_zone(data)
    start, end = When.from_data(data["start"]), When.from_data(data["end"])
    if data.get("isAllDay"):
        original = dt.datetime.combine(day, dt.time(), tz).astimezone(UTC)
        days = (end.local.date() - start.local.date()).days
        span_end = dt.datetime.combine(day + dt.timedelta(days=days), dt.time(), tz).astimezone(UTC)
        all_day: tuple[dt.date, dt.date] | None = (day, day + dt.timedelta(days=days))
    else:
        wall = start.utc.astimezone(tz).time().replace(tzinfo=None)
        original = dt.datetime.combine(day, wall, tz).astimezone(UTC)
        span_end = original + (end.utc - start.utc)
        all_day = None
    key = utc_iso(original)
    if key in data.get("exdates", []):
        return None
    overrides = dict(data.get("exceptions", {}).get(key) or {})
    if "start" in overrides or "end" in overrides:
        s, e, all_day = _span({**data, **overrides})
        return Instance(calendar_id, master, original, s, e, all_day, overrides)
    return Instance(calendar_id, master, original, original, span_end, all_day, overrides)


def expand(calendar_id: str, item: Item, window: tuple[dt.datetime, dt.datetime]) -> list[Instance]:
    data = item.data
    if not data.get("recurrence"):
        s, e, all_day = _span(data)
        return [Instance(calendar_id, item, None, s, e, all_day)] if _overlaps(s, e, window) else []
    tz = _series_zone(data)
    # Exceptions may move an occurrence by a few days either way: look a little past the window's end.
    until = (window[1].astimezone(tz) + dt.timedelta(days=7)).date()
    found = []
    for day in occurrence_dates(data["recurrence"], until):
        inst = _occurrence(calendar_id, item, day)
        if inst is not None and _overlaps(inst.start, inst.end, window):
            found.append(inst)
    return found


def calendar_instances(emu: Emulator, user_id: str, calendar_id: str,
                       window: tuple[dt.datetime, dt.datetime]) -> list[Instance]:
    with emu.store.lock:
        coll = emu.store.collection(user_id, calendar_id, KIND_CALENDAR)
        if coll is None:
            raise not_found()
        found = [inst for item in coll.items.values() for inst in expand(calendar_id, item, window)]
    return sorted(found, key=lambda i: (i.start, i.key))


def instance_json(ctx: GraphContext, inst: Instance, zone_name: str | None) -> dict[str, Any]:
    out = event_json(ctx.emu, inst.master, ctx.user.id, ctx.immutable, zone_name)
    if inst.original_start is None:
        return out
    series_id = out["id"]
    out["id"] = occurrence_id(series_id, inst.original_start)
    out["seriesMasterId"] = series_id
    out["type"] = "exception" if inst.overrides else "occurrence"
    out["recurrence"] = None
    out["webLink"] = out["webLink"].replace(quote(series_id, safe=""), quote(out["id"], safe=""))
    out["originalStart"] = utc_iso(inst.original_start)
    for name in EXCEPTION_FIELDS:
        if name in inst.overrides and name not in ("start", "end"):
            out[name] = inst.overrides[name]
    if "body" in inst.overrides:
        out["bodyPreview"] = body_preview(inst.overrides["body"])
    if inst.all_day is not None:
        out["start"], out["end"] = all_day_json(inst.all_day[0], zone_name), all_day_json(inst.all_day[1], zone_name)
    else:
        out["start"], out["end"] = time_json(inst.start, zone_name), time_json(inst.end, zone_name)
    return out


# ---------------------------------------------------------------------------------------- occurrences

def find_occurrence(ctx: GraphContext, any_id: str) -> Instance | None:
    """The occurrence an occurrence id names; None when the id is not an occurrence id; 404 when the series or
    the occurrence does not exist."""
    parsed = parse_occurrence_id(any_id)
    if parsed is None:
        return None
    series_id, original = parsed
    coll, master = find_event(ctx.emu, ctx.user.id, series_id)
    recurrence = master.data.get("recurrence")
    if not recurrence:
        raise not_found()
    day = original.astimezone(_series_zone(master.data)).date()
    if day not in set(occurrence_dates(recurrence, day)):
        raise not_found()
    inst = _occurrence(coll.id, master, day)
    if inst is None or inst.original_start != original:
        raise not_found()
    return inst


def _when_data(instant: dt.datetime, zone_name: str) -> dict[str, str]:
    return When(instant.astimezone(zone(zone_name)).replace(tzinfo=None), zone_name, instant).as_data()


def update_occurrence(ctx: GraphContext, inst: Instance, body: dict[str, Any]) -> Instance:
    """PATCH of one occurrence: it becomes an exception of its series (its overrides live in the master)."""
    assert inst.original_start is not None
    for name in body:
        if not name.startswith("@odata.") and name not in EXCEPTION_FIELDS:
            raise bad_request(f"The property '{name}' cannot be changed on an occurrence of a series.",
                              "ErrorInvalidRequest")
    master = inst.master
    start_zone = master.data["start"]["zone"]
    current = {**master.data, "recurrence": None, "exdates": [], "exceptions": {}, **inst.overrides,
               "start": inst.overrides.get("start") or _when_data(inst.start, start_zone),
               "end": inst.overrides.get("end") or _when_data(inst.end, master.data["end"]["zone"])}
    merged, _ = parse_event({k: v for k, v in body.items() if not k.startswith("@odata.")}, current)
    overrides = {name: merged[name] for name in EXCEPTION_FIELDS if name in body or name in inst.overrides}
    key = utc_iso(inst.original_start)
    with ctx.store.lock:
        data = dict(master.data)
        data["exceptions"] = {**data.get("exceptions", {}), key: overrides}
        updated = ctx.store.update_item(ctx.user.id, master.immutable_id, data)
    day = inst.original_start.astimezone(_series_zone(updated.data)).date()
    result = _occurrence(inst.calendar_id, updated, day)
    assert result is not None
    return result


def delete_occurrence(ctx: GraphContext, inst: Instance) -> None:
    assert inst.original_start is not None
    key = utc_iso(inst.original_start)
    with ctx.store.lock:
        data = dict(inst.master.data)
        data["exdates"] = [*data.get("exdates", []), key]
        data["exceptions"] = {k: v for k, v in data.get("exceptions", {}).items() if k != key}
        ctx.store.update_item(ctx.user.id, inst.master.immutable_id, data)
