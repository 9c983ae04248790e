"""Calendars and events over real HTTP against the emulator process: the unmodified msgraph-sdk for events,
calendar views and calendarView delta; raw httpx for status codes, headers and Microsoft's published payloads."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import pytest

from tests.emulator.conftest import GraphHttp
from tests.graph_docs import GRAPH_DOCS

FIXTURES = GRAPH_DOCS
PST = {"Prefer": 'outlook.timezone="Pacific Standard Time"'}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def event(subject: str, start: str, end: str, zone: str = "UTC", **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "start": {"dateTime": start, "timeZone": zone},
            "end": {"dateTime": end, "timeZone": zone}, **extra}


def view(graph: GraphHttp, start: str, end: str, **kw: Any) -> list[dict[str, Any]]:
    page = graph.ok("GET", "/me/calendarView", params={"startDateTime": start, "endDateTime": end, "$top": "50"}, **kw)
    return list(page["value"])


def delta_round(graph: GraphHttp, first: str, params: dict[str, str] | None = None,
                page_size: int | None = None) -> tuple[list[dict[str, Any]], str]:
    headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
    page = graph.ok("GET", first, params=params, headers=headers)
    values = list(page["value"])
    while "@odata.nextLink" in page:
        page = graph.ok("GET", page["@odata.nextLink"], headers=headers)
        values += page["value"]
    return values, page["@odata.deltaLink"]


# ---------------------------------------------------------------------------------------------- basics

def test_calendars_default_create_and_events_in_them(graph: GraphHttp) -> None:
    calendars = graph.ok("GET", "/me/calendars")["value"]
    assert [(c["name"], c["isDefaultCalendar"]) for c in calendars] == [("Calendar", True)]
    assert graph.ok("GET", "/me/calendar")["id"] == calendars[0]["id"]
    other = graph.ok("POST", "/me/calendars", {"name": "CRM"}, status=201)
    assert other["isDefaultCalendar"] is False and other["changeKey"]
    assert graph.post("/me/calendars", {"name": "crm"}).status_code == 409
    created = graph.ok("POST", f"/me/calendars/{other['id']}/events", load("calendar-post-events.request.json"),
                       status=201, headers=PST)
    assert set(load("calendar-post-events.response.json")) - {"@odata.context"} <= set(created)
    assert f"calendars('{quote(other['id'], safe='')}')/events/$entity" in created["@odata.context"]  # as published
    assert graph.ok("GET", f"/me/events/{created['id']}")["subject"] == "Let's go for lunch"
    assert graph.get(f"/me/calendar/events/{created['id']}").status_code == 404  # not in the default calendar
    assert graph.ok("GET", "/me/events")["value"] == []
    assert graph.delete(f"/me/calendars/{other['id']}").status_code == 204
    assert graph.get(f"/me/events/{created['id']}").status_code == 404
    assert graph.delete(f"/me/calendars/{calendars[0]['id']}").status_code == 400


@pytest.mark.parametrize("name", ["user-post-events", "user-post-events-multiple-locations",
                                  "user-post-events-recurring", "user-post-events-online-meeting",
                                  "calendar-post-events-online-meeting"])
def test_published_event_payloads_are_accepted_and_answered_in_shape(graph: GraphHttp, name: str) -> None:
    path = "/me/calendar/events" if name.startswith("calendar-") else "/me/events"
    answer = graph.post(path, load(f"{name}.request.json"), headers=PST)
    assert answer.status_code == 201, answer.text
    assert answer.headers["Preference-Applied"] == 'outlook.timezone="Pacific Standard Time"'
    created = answer.json()
    published = load(f"{name}.response.json")
    assert set(published) - {"@odata.context"} <= set(created)
    for nested in ("location", "responseStatus", "body", "start", "organizer"):
        assert set(published[nested]) <= set(created[nested]), nested
    assert [set(a) for a in published["attendees"]] == [set(a) for a in created["attendees"]]
    assert len(published["locations"]) == len(created["locations"])
    assert all(set(p) <= set(c) for p, c in zip(published["locations"], created["locations"]))
    request = load(f"{name}.request.json")
    assert created["start"] == {"dateTime": request["start"]["dateTime"] + ".0000000", "timeZone": "Pacific Standard Time"}
    assert created["isReminderOn"] is True and created["reminderMinutesBeforeStart"] == 15
    assert created["responseStatus"]["response"] == "organizer" and created["isOrganizer"] is True
    assert created["iCalUId"] and created["webLink"].startswith("https://outlook.office365.com/owa/?itemid=")
    assert created["type"] == ("seriesMaster" if "recurring" in name else "singleInstance")
    if published.get("recurrence"):
        assert created["recurrence"] == published["recurrence"]
    if published.get("onlineMeeting"):
        assert created["onlineMeeting"]["joinUrl"].startswith("https://teams.microsoft.com/")


def test_sdk_event_crud_and_change_keys(make_sdk: Callable[[str], Any], aio: Any, emulator_user: dict[str, Any]) -> None:
    from msgraph.generated.models.attendee import Attendee
    from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.event import Event
    from msgraph.generated.models.event_type import EventType

    client = make_sdk(emulator_user["token"])

    async def scenario() -> None:
        created = await client.me.events.post(Event(
            subject="Quarterly review",
            start=DateTimeTimeZone(date_time="2026-05-04T09:00:00", time_zone="Europe/Berlin"),
            end=DateTimeTimeZone(date_time="2026-05-04T10:30:00", time_zone="Europe/Berlin"),
            categories=["CRM"],
            attendees=[Attendee(email_address=EmailAddress(address="pat@contoso.test", name="Pat"))]))
        assert created.type == EventType.SingleInstance and created.series_master_id is None
        assert created.start.time_zone == "UTC" and created.start.date_time.startswith("2026-05-04T07:00:00")
        assert created.original_start_time_zone == "Europe/Berlin"
        assert created.attendees[0].status.response.value == "none"
        events = client.me.events.by_event_id(created.id)
        moved = await events.patch(Event(subject="Quarterly review (moved)",
                                          end=DateTimeTimeZone(date_time="2026-05-04T11:00:00", time_zone="Europe/Berlin")))
        assert moved.subject.endswith("(moved)") and moved.categories == ["CRM"]
        assert moved.change_key != created.change_key and moved.end.date_time.startswith("2026-05-04T09:00:00")
        assert moved.last_modified_date_time >= created.last_modified_date_time
        fetched = await events.get()
        assert fetched.change_key == moved.change_key
        await events.delete()
        assert (await client.me.events.get()).value == []

    aio(scenario())


# ------------------------------------------------------------------------------------------ time zones

def test_windows_and_iana_names_give_the_same_instant_across_dst(graph: GraphHttp) -> None:
    winter_win = graph.ok("POST", "/me/events", event("w", "2026-01-15T09:00:00", "2026-01-15T10:00:00",
                                                      "Pacific Standard Time"), status=201)
    winter_iana = graph.ok("POST", "/me/events", event("i", "2026-01-15T09:00:00", "2026-01-15T10:00:00",
                                                       "America/Los_Angeles"), status=201)
    summer = graph.ok("POST", "/me/events", event("s", "2026-07-15T09:00:00", "2026-07-15T10:00:00",
                                                  "Pacific Standard Time"), status=201)
    assert winter_win["start"] == winter_iana["start"] == {"dateTime": "2026-01-15T17:00:00.0000000", "timeZone": "UTC"}
    assert summer["start"]["dateTime"] == "2026-07-15T16:00:00.0000000"  # PDT
    in_berlin = graph.get(f"/me/events/{summer['id']}", headers={"Prefer": 'outlook.timezone="Europe/Berlin"'})
    assert in_berlin.headers["Preference-Applied"] == 'outlook.timezone="Europe/Berlin"'
    assert in_berlin.json()["start"] == {"dateTime": "2026-07-15T18:00:00.0000000", "timeZone": "Europe/Berlin"}
    assert "Preference-Applied" not in graph.get(f"/me/events/{summer['id']}").headers
    unknown = graph.post("/me/events", event("x", "2026-01-01T09:00:00", "2026-01-01T10:00:00", "Mars Standard Time"))
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "TimeZoneNotSupportedException"
    assert graph.get("/me/events", headers={"Prefer": 'outlook.timezone="Nowhere/City"'}).status_code == 400


def test_all_day_validation_as_outlook_enforces_it(graph: GraphHttp) -> None:
    bad = [
        event("not midnight", "2026-03-10T09:00:00", "2026-03-11T00:00:00", "W. Europe Standard Time", isAllDay=True),
        event("end not midnight", "2026-03-10T00:00:00", "2026-03-11T12:00:00", "UTC", isAllDay=True),
        event("empty", "2026-03-10T00:00:00", "2026-03-10T00:00:00", "UTC", isAllDay=True),
        event("backwards", "2026-03-12T00:00:00", "2026-03-10T00:00:00", "UTC", isAllDay=True),
        {"subject": "two zones", "isAllDay": True, "start": {"dateTime": "2026-03-10T00:00:00", "timeZone": "UTC"},
         "end": {"dateTime": "2026-03-11T00:00:00", "timeZone": "Tokyo Standard Time"}},
        event("timed backwards", "2026-03-10T10:00:00", "2026-03-10T09:00:00"),
    ]
    for body in bad:
        answer = graph.post("/me/events", body)
        assert answer.status_code == 400, body["subject"]
        assert answer.json()["error"] == {**answer.json()["error"], "code": "ErrorPropertyValidationFailure",
                                          "message": "At least one property failed validation."}
    timed = graph.ok("POST", "/me/events", event("timed", "2026-03-10T09:00:00", "2026-03-10T10:00:00"), status=201)
    flip = graph.patch(f"/me/events/{timed['id']}", {"isAllDay": True})
    assert flip.status_code == 400


def test_all_day_events_are_floating_days(graph: GraphHttp) -> None:
    created = graph.ok("POST", "/me/events", event("Offsite", "2026-03-29", "2026-03-31", "W. Europe Standard Time",
                                                   isAllDay=True), status=201)
    assert created["isAllDay"] is True
    assert created["start"] == {"dateTime": "2026-03-29T00:00:00.0000000", "timeZone": "UTC"}
    assert created["end"] == {"dateTime": "2026-03-31T00:00:00.0000000", "timeZone": "UTC"}
    in_tokyo = graph.ok("GET", f"/me/events/{created['id']}", headers={"Prefer": 'outlook.timezone="Tokyo Standard Time"'})
    assert in_tokyo["start"] == {"dateTime": "2026-03-29T00:00:00.0000000", "timeZone": "Tokyo Standard Time"}
    # Across Europe's DST change (29 March 2026) the day range stays two whole days.
    seen = view(graph, "2026-03-30T12:00:00Z", "2026-03-30T13:00:00Z")
    assert [e["subject"] for e in seen] == ["Offsite"]
    assert view(graph, "2026-03-31T00:00:00Z", "2026-04-01T00:00:00Z") == []  # ends at midnight Berlin time


# ---------------------------------------------------------------------------------------- recurrence

def test_weekly_series_expands_with_stable_occurrence_ids(graph: GraphHttp) -> None:
    series = graph.ok("POST", "/me/events", load("user-post-events-recurring.request.json"), status=201)
    september = view(graph, "2017-09-01T00:00:00Z", "2017-10-01T00:00:00Z")
    assert [e["type"] for e in september] == ["occurrence"] * 4
    assert [e["start"]["dateTime"] for e in september] == [f"2017-09-{d:02d}T19:00:00.0000000" for d in (4, 11, 18, 25)]
    assert {e["seriesMasterId"] for e in september} == {series["id"]}
    assert all(e["recurrence"] is None and e["originalStart"] for e in september)
    again = view(graph, "2017-09-10T00:00:00Z", "2017-09-20T00:00:00Z")
    assert [e["id"] for e in again] == [september[1]["id"], september[2]["id"]]
    # After the US DST change the meeting stays at noon Pacific: 20:00 UTC.
    assert view(graph, "2017-11-06T00:00:00Z", "2017-11-07T00:00:00Z")[0]["start"]["dateTime"] == "2017-11-06T20:00:00.0000000"
    assert view(graph, "2018-01-01T00:00:00Z", "2018-02-01T00:00:00Z") == []  # the range ends 2017-12-31
    occurrence = graph.ok("GET", f"/me/events/{september[1]['id']}", headers=PST)
    assert occurrence["type"] == "occurrence" and occurrence["start"]["dateTime"] == "2017-09-11T12:00:00.0000000"
    instances = graph.ok("GET", f"/me/events/{series['id']}/instances",
                         params={"startDateTime": "2017-09-01T00:00:00Z", "endDateTime": "2017-10-01T00:00:00Z"})
    assert [e["id"] for e in instances["value"]] == [e["id"] for e in september]
    assert [e["id"] for e in graph.ok("GET", "/me/events")["value"]] == [series["id"]]  # masters, not occurrences


def test_occurrences_can_be_cancelled_and_edited(graph: GraphHttp) -> None:
    series = graph.ok("POST", "/me/events", event("Standup", "2026-02-02T09:00:00", "2026-02-02T09:15:00",
                                                  "Eastern Standard Time", recurrence={
                                                      "pattern": {"type": "daily", "interval": 1},
                                                      "range": {"type": "numbered", "startDate": "2026-02-02",
                                                                "numberOfOccurrences": 5}}), status=201)
    assert series["recurrence"]["range"]["recurrenceTimeZone"] == "Eastern Standard Time"
    days = view(graph, "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    assert len(days) == 5
    assert graph.delete(f"/me/events/{days[1]['id']}").status_code == 204
    late = event("Standup (late)", "2026-02-04T11:00:00", "2026-02-04T11:15:00", "Eastern Standard Time")
    moved = graph.ok("PATCH", f"/me/events/{days[2]['id']}", late)
    assert moved["type"] == "exception" and moved["id"] == days[2]["id"]
    after = view(graph, "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    assert [e["id"] for e in after] == [days[0]["id"], days[2]["id"], days[3]["id"], days[4]["id"]]
    assert after[1]["subject"] == "Standup (late)" and after[1]["start"]["dateTime"] == "2026-02-04T16:00:00.0000000"
    assert graph.get(f"/me/events/{days[1]['id']}").status_code == 404
    assert graph.patch(f"/me/events/{days[0]['id']}", {"recurrence": None}).status_code == 400
    bad = graph.post("/me/events", event("bad", "2026-02-02T09:00:00", "2026-02-02T10:00:00", recurrence={
        "pattern": {"type": "weekly", "interval": 1}, "range": {"type": "noEnd", "startDate": "2026-02-02"}}))
    assert bad.status_code == 400  # weekly without daysOfWeek


# ------------------------------------------------------------------------------------ calendarView delta

def test_calendar_view_delta_rounds_and_window_semantics(graph: GraphHttp) -> None:
    window = {"startDateTime": "2026-06-01T00:00:00Z", "endDateTime": "2026-06-08T00:00:00Z"}
    inside = [graph.ok("POST", "/me/events", event(f"In {d}", f"2026-06-0{d}T10:00:00", f"2026-06-0{d}T11:00:00"),
                       status=201)["id"] for d in (2, 3, 4)]
    series = graph.ok("POST", "/me/events", event("Daily", "2026-06-05T08:00:00", "2026-06-05T08:30:00", recurrence={
        "pattern": {"type": "daily", "interval": 1}, "range": {"type": "endDate", "startDate": "2026-06-05",
                                                               "endDate": "2026-06-10"}}), status=201)
    outside = graph.ok("POST", "/me/events", event("Later", "2026-07-01T10:00:00", "2026-07-01T11:00:00"), status=201)

    first, link = delta_round(graph, "/me/calendarView/delta", window, page_size=2)
    by_id = {e["id"]: e for e in first}
    assert set(inside) <= set(by_id) and outside["id"] not in by_id and series["id"] not in by_id
    occurrences = [e for e in first if e["type"] == "occurrence"]
    assert [e["start"]["dateTime"][:10] for e in occurrences] == ["2026-06-05", "2026-06-06", "2026-06-07"]
    assert all(e["@odata.type"] == "#microsoft.graph.event" for e in first)

    new = graph.ok("POST", "/me/events", event("New", "2026-06-06T12:00:00", "2026-06-06T13:00:00"), status=201)
    graph.ok("PATCH", f"/me/events/{inside[0]}", {"subject": "In 2 (renamed)"})
    graph.delete(f"/me/events/{inside[1]}")
    graph.ok("PATCH", f"/me/events/{inside[2]}", {"start": {"dateTime": "2026-06-20T10:00:00", "timeZone": "UTC"},
                                                  "end": {"dateTime": "2026-06-20T11:00:00", "timeZone": "UTC"}})
    graph.ok("PATCH", f"/me/events/{outside['id']}", {"subject": "Later (edited)"})
    graph.delete(f"/me/events/{occurrences[1]['id']}")  # cancel one occurrence

    second, link2 = delta_round(graph, link, page_size=2)
    changes = {e["id"]: e for e in second}
    assert changes[new["id"]]["subject"] == "New"
    assert changes[inside[0]]["subject"] == "In 2 (renamed)"
    removed = {i for i, e in changes.items() if e.get("@removed") == {"reason": "deleted"}}
    # deleted, moved out of the window, edited outside the window, and the cancelled occurrence
    assert {inside[1], inside[2], outside["id"], occurrences[1]["id"]} <= removed
    assert occurrences[0]["id"] in changes  # the series changed, so its occurrences come again
    third, _ = delta_round(graph, link2)
    assert third == []


def test_sdk_calendar_view_delta_with_removed(make_sdk: Callable[[str], Any], aio: Any,
                                              emulator_user: dict[str, Any], graph: GraphHttp) -> None:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder

    client = make_sdk(emulator_user["token"])
    keep = graph.ok("POST", "/me/events", event("Keep", "2026-09-01T10:00:00", "2026-09-01T11:00:00"), status=201)
    drop = graph.ok("POST", "/me/events", event("Drop", "2026-09-02T10:00:00", "2026-09-02T11:00:00"), status=201)

    async def scenario() -> None:
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            start_date_time="2026-09-01T00:00:00Z", end_date_time="2026-09-30T00:00:00Z")
        config = RequestConfiguration(query_parameters=query)
        config.headers.add("Prefer", 'outlook.timezone="Pacific Standard Time"')
        page = await client.me.calendar_view.delta.get(request_configuration=config)
        assert {e.subject for e in page.value} == {"Keep", "Drop"} and page.odata_delta_link
        assert {e.start.time_zone for e in page.value} == {"Pacific Standard Time"}
        graph.delete(f"/me/events/{drop['id']}")
        nxt = await client.me.calendar_view.delta.with_url(page.odata_delta_link).get()
        assert [(e.id, e.additional_data.get("@removed")) for e in nxt.value] == [(drop["id"], {"reason": "deleted"})]
        assert keep["id"] not in {e.id for e in nxt.value}

    aio(scenario())


def test_calendar_view_delta_refusals_and_expiry(graph: GraphHttp, control: Any, emulator_user: dict[str, Any]) -> None:
    assert graph.get("/me/calendarView/delta").json()["error"]["code"] == "ErrorInvalidParameter"
    window = {"startDateTime": "2026-06-01T00:00:00Z", "endDateTime": "2026-06-08T00:00:00Z"}
    for option in ("$select", "$filter", "$orderby"):
        assert graph.get("/me/calendarView/delta", params={**window, option: "subject"}).status_code == 400
    assert graph.get("/me/calendarView", params={"startDateTime": "2026-06-01T00:00:00Z"}).status_code == 400
    _, link = delta_round(graph, "/me/calendarView/delta", window)
    garbled = graph.get(link[:-3] + "xyz")
    assert garbled.status_code == 400
    control.expire_delta_tokens(emulator_user["id"])
    expired = graph.get(link)
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "SyncStateNotFound"


def test_delta_window_is_fixed_by_the_token(graph: GraphHttp) -> None:
    window = {"startDateTime": "2026-10-01T00:00:00Z", "endDateTime": "2026-10-02T00:00:00Z"}
    _, link = delta_round(graph, "/me/calendarView/delta", window)
    graph.ok("POST", "/me/events", event("Far", "2026-12-01T10:00:00", "2026-12-01T11:00:00"), status=201)
    near = graph.ok("POST", "/me/events", event("Near", "2026-10-01T10:00:00", "2026-10-01T11:00:00"), status=201)
    later, _ = delta_round(graph, link + "&startDateTime=2026-11-01T00:00:00Z&endDateTime=2027-01-01T00:00:00Z")
    inside = [e for e in later if "@removed" not in e]
    assert [e["id"] for e in inside] == [near["id"]]


def test_ui_page_creates_edits_and_deletes_events(graph: GraphHttp, emulator: Any, emulator_user: dict[str, Any],
                                                  http_client: Any) -> None:
    import re
    root = emulator.control.rsplit("/_emulator", 1)[0]
    graph.ok("GET", "/me/calendar")
    page = http_client.get(emulator.ui).text
    [create] = re.findall(rf'action="(/_emulator/ui/users/{emulator_user["id"]}/calendar/calendars/[^"]+/events)"', page)
    made = http_client.post(root + create, data={"subject": "Lunch", "start": "2026-04-01T12:00",
                                                 "end": "2026-04-01T13:00", "zone": "W. Europe Standard Time"})
    assert made.status_code == 303
    [lunch] = graph.ok("GET", "/me/events")["value"]
    assert lunch["start"]["dateTime"] == "2026-04-01T10:00:00.0000000"  # 12:00 CEST
    assert lunch["originalStartTimeZone"] == "W. Europe Standard Time"
    all_day = http_client.post(root + create, data={"subject": "Holiday", "start": "2026-04-03T00:00",
                                                    "end": "2026-04-04T00:00", "zone": "UTC", "isAllDay": "true"})
    assert all_day.status_code == 303
    edit = f"/_emulator/ui/users/{emulator_user['id']}/calendar/events/{lunch['id']}"
    moved = http_client.post(root + edit, data={"subject": "Long lunch", "start": "2026-04-01T12:00",
                                                "end": "2026-04-01T14:30", "zone": "W. Europe Standard Time"})
    assert moved.status_code == 303
    after = graph.ok("GET", f"/me/events/{lunch['id']}")
    assert after["subject"] == "Long lunch" and after["end"]["dateTime"] == "2026-04-01T12:30:00.0000000"
    assert after["changeKey"] != lunch["changeKey"]
    backwards = http_client.post(root + edit, data={"start": "2026-04-01T15:00", "end": "2026-04-01T14:00",
                                                    "zone": "UTC"})
    assert backwards.status_code == 400
    assert http_client.post(root + edit + "/delete").status_code == 303
    assert [e["subject"] for e in graph.ok("GET", "/me/events")["value"]] == ["Holiday"]
    assert "Holiday" in http_client.get(emulator.ui).text


def test_delta_links_survive_a_restart_with_a_state_file(tmp_path: Path, http_client: Any) -> None:
    from m365_emulator.server import EmulatorProcess

    process = EmulatorProcess(workdir=tmp_path, state_file=tmp_path / "state.json")
    with process:
        control = process.control_client()
        _, token = control.new_user_with_token()
        control.close()
        graph = GraphHttp(process.graph, token, http_client)
        gone = graph.ok("POST", "/me/events", event("Gone", "2026-06-02T10:00:00", "2026-06-02T11:00:00"), status=201)
        _, link = delta_round(graph, "/me/calendarView/delta",
                              {"startDateTime": "2026-06-01T00:00:00Z", "endDateTime": "2026-06-08T00:00:00Z"})
        process.restart()
        graph = GraphHttp(process.graph, token, http_client)
        graph.delete(f"/me/events/{gone['id']}")
        changes, _ = delta_round(graph, link.replace(link.split("/v1.0")[0], process.graph.split("/v1.0")[0]))
        assert changes == [{"@odata.type": "#microsoft.graph.event", "id": gone["id"], "@removed": {"reason": "deleted"}}]


def test_events_tagged_with_an_extended_property_can_be_found(graph: GraphHttp) -> None:
    prop = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name CrmId"
    tagged = graph.ok("POST", "/me/events", {**event("Tagged", "2026-05-05T10:00:00", "2026-05-05T11:00:00"),
                                             "singleValueExtendedProperties": [{"id": prop, "value": "crm-7"}]},
                      status=201)
    graph.ok("POST", "/me/events", event("Plain", "2026-05-05T12:00:00", "2026-05-05T13:00:00"), status=201)
    spelled = prop.replace("String", "string").replace("Name", "name")  # Exchange compares ids case-insensitively
    found = graph.ok("GET", "/me/events", params={
        "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{spelled}' and ep/value eq 'crm-7')",
        "$expand": f"singleValueExtendedProperties($filter=id eq '{prop}')"})["value"]
    assert [e["id"] for e in found] == [tagged["id"]]
    assert found[0]["singleValueExtendedProperties"] == [{"id": prop, "value": "crm-7"}]
    assert "singleValueExtendedProperties" not in graph.ok("GET", f"/me/events/{tagged['id']}")
