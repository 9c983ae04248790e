"""Hypothesis strategies for what people type: empty, huge, unicode, control characters, HTML, invalid e-mail
addresses and phone numbers, and dates at the edges (year boundaries, DST gaps and folds, 29 February)."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

CONTROL = st.characters(min_codepoint=0, max_codepoint=31) | st.sampled_from(["\x7f", "\x85", "\u2028", "\u2029",
                                                                               "\ufeff", "\u200b", "\u202e"])
ANY_CHAR = st.characters(blacklist_categories=("Cs",))  # every code point a JSON string can carry
TRICKY = st.sampled_from([
    "", " ", "   ", "\t\n", "Zoë Ångström", "李小龍", "Ωμέγα", "😀👩‍👩‍👧‍👦", "e\u0301", "ﬁ", "\u202etxet desrever",
    "<b>bold</b>", "<script>alert(1)</script>", "&amp; &lt;tag&gt;", "'; DROP TABLE contacts;--", "null",
    "O'Brien", "Smith, Jr.", "a\x00b", "line\r\nbreak", "\\u0000", "%s%n", "{{7*7}}",
])


def _long(unit: str, count: int) -> str:
    return unit * count


HUGE = st.builds(_long, st.sampled_from(["a", "é", "😀", "ab ", "<p>x</p>", "\x01"]), st.integers(300, 12_000))
TEXT = TRICKY | st.text(ANY_CHAR, max_size=60) | st.text(CONTROL, min_size=1, max_size=8) | HUGE
SHORT_TEXT = TRICKY | st.text(ANY_CHAR, max_size=40)

EMAIL = st.sampled_from([
    "ada@example.com", "ADA@EXAMPLE.COM", " ada@example.com ", "not-an-email", "a@", "@b", "a@@b.com", "a b@c.d",
    "üser@exämple.de", "x" * 300 + "@example.com", "", "ada@example.com\n", "<ada@example.com>",
]) | st.text(ANY_CHAR, max_size=30)
PHONE = st.sampled_from([
    "+44 20 7946 0958", "(020) 7946-0958 ext. 12", "0044207946095800000000000000000000000000000000000000000000000000000",
    "☎ 123", "call me", "", "+", "+1-800-FLOWERS", "١٢٣٤٥", "12\n34",
]) | st.text(ANY_CHAR, max_size=20)


def crm_contact_values() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "first_name": TEXT, "last_name": TEXT, "emails": st.lists(EMAIL, max_size=5).map(tuple),
        "business_phone": PHONE, "mobile_phone": PHONE, "job_title": TEXT, "notes": TEXT,
        "street": TEXT, "city": SHORT_TEXT,
    })


def graph_contact() -> st.SearchStrategy[dict[str, Any]]:
    """A contact body as Outlook (or another app writing to it) may hold it, nulls and odd shapes included."""
    optional_text = st.none() | TEXT
    return st.fixed_dictionaries({
        "givenName": optional_text, "surname": optional_text,
        "displayName": st.none() | SHORT_TEXT,
        "emailAddresses": st.lists(st.fixed_dictionaries({"address": st.none() | EMAIL, "name": st.none() | SHORT_TEXT}),
                                   max_size=5),
        "businessPhones": st.lists(PHONE, max_size=3), "mobilePhone": st.none() | PHONE,
        "jobTitle": optional_text, "companyName": st.none() | SHORT_TEXT | HUGE, "personalNotes": optional_text,
        "businessAddress": st.fixed_dictionaries({"street": optional_text, "city": st.none() | SHORT_TEXT}),
    })


# -- dates ---------------------------------------------------------------------------------------------

ZONES = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata", "UTC"]


def _edge_days() -> list[date]:
    today = datetime.now(UTC).date()
    year = today.year
    return [
        today, today + timedelta(days=1), today - timedelta(days=1),
        date(year, 12, 31), date(year + 1, 1, 1), date(year, 3, 29), date(year, 10, 25),  # EU DST changes
        date(year, 3, 8), date(year, 11, 1),  # US DST changes (around)
        date(2028, 2, 29), date(2027, 12, 31), date(2028, 1, 1),
    ]


DAY = st.sampled_from(_edge_days()) | st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
WALL = st.sampled_from([time(0, 0), time(0, 30), time(1, 30), time(2, 30), time(23, 59), time(12, 0)]) | st.times()


@st.composite
def due(draw: st.DrawFn) -> tuple[date | None, datetime | None]:
    """(due_date, due_at): all-day, timed (a wall time in a zone, DST gaps and folds included), or none."""
    kind = draw(st.sampled_from(["day", "instant", "none"]))
    if kind == "none":
        return None, None
    day = draw(DAY)
    if kind == "day":
        return day, None
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    wall = draw(WALL)
    return None, datetime.combine(day, wall, tzinfo=zone).replace(fold=draw(st.sampled_from([0, 1])))


BODY = TEXT | st.sampled_from([
    "<html><body><p>Agenda</p><ul><li>one</li></ul></body></html>", "<div style='x'>a<br>b</div>",
    "<p>unclosed", "&nbsp;&nbsp;", "<![CDATA[x]]>", "<!-- comment -->text",
])
