"""Time zones as Outlook names them: Windows ids ("Pacific Standard Time") and IANA names ("America/Los_Angeles").

Graph accepts either in `dateTimeTimeZone.timeZone` and in `Prefer: outlook.timezone`; the emulator computes with
IANA rules (zoneinfo), so every Windows id needs its IANA zone: Unicode CLDR's windowsZones.xml mapping (the zone
CLDR picks for each Windows id, territory "001"), as the `tzlocal` package ships it — the one mapping the product
uses too, so the emulator cannot accept a Windows id the product does not know, or the other way round.

A name Graph does not know is answered as Exchange answers it: 400 TimeZoneNotSupportedException.
"""
from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import win_tz

from m365_emulator.kernel.graph import GraphError

UTC = dt.timezone.utc

# Exchange matches Windows ids regardless of case.
_IANA_BY_LOWER_WINDOWS: dict[str, str] = {name.lower(): iana for name, iana in win_tz.items()}


def not_supported(name: str) -> GraphError:
    return GraphError(400, "TimeZoneNotSupportedException",
                      f"A valid TimeZone value must be specified. The following TimeZone value is not supported: "
                      f"'{name}'.")


@lru_cache(maxsize=512)
def _iana_zone(name: str) -> ZoneInfo | None:
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", name) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone(name: str | None) -> dt.tzinfo:
    """The tzinfo for a Windows id or an IANA name (both case-insensitive for Windows ids); 400 if unknown."""
    if name is None or not str(name).strip():
        raise not_supported("" if name is None else str(name))
    text = str(name).strip()
    found = _iana_zone(_IANA_BY_LOWER_WINDOWS.get(text.lower(), text))
    if found is None:
        raise not_supported(text)
    return found


def is_known(name: str | None) -> bool:
    try:
        zone(name)
        return True
    except GraphError:
        return False


# ------------------------------------------------------------------------------- dateTimeTimeZone values

_LOCAL = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?"
                    r"(Z|[+-]\d{2}:?\d{2})?$")


def parse_local(text: str) -> tuple[dt.datetime, dt.timezone | None]:
    """A dateTimeTimeZone.dateTime ("2017-04-15T12:00:00", "…T04:00:00.0000000", or a bare date as Outlook
    accepts for all-day items) as a naive wall-clock time, plus the explicit UTC offset if the text carried one."""
    match = _LOCAL.match(str(text).strip())
    if not match:
        raise GraphError(400, "BadRequest", f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTime'.")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0").ljust(7, "0")[:6])
    try:
        value = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                            micro)
    except ValueError:
        raise GraphError(400, "BadRequest",
                         f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTime'.") from None
    tz: dt.timezone | None = None
    if offset:
        if offset == "Z":
            tz = UTC
        else:
            sign = 1 if offset[0] == "+" else -1
            digits = offset[1:].replace(":", "")
            tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return value, tz


def to_utc(text: str, zone_name: str) -> dt.datetime:
    """A dateTimeTimeZone pair as an aware UTC datetime. An explicit offset in the text wins over the zone name
    (the name is still checked). Wall times in a DST gap or overlap resolve as zoneinfo does (fold=0)."""
    tz = zone(zone_name)
    local, offset = parse_local(text)
    aware = local.replace(tzinfo=offset) if offset is not None else local.replace(tzinfo=tz)
    return aware.astimezone(UTC)


def from_utc(value: dt.datetime, zone_name: str) -> dt.datetime:
    """A UTC instant as naive wall-clock time in the named zone."""
    return value.astimezone(zone(zone_name)).replace(tzinfo=None)


def graph_datetime(local: dt.datetime) -> str:
    """Outlook's dateTime form: seven fractional digits, no offset ("2017-04-15T11:00:00.0000000")."""
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0"


def parse_instant(text: str) -> dt.datetime:
    """A query-string instant (calendarView startDateTime/endDateTime): ISO 8601, UTC when no offset is given."""
    local, offset = parse_local(text)
    return local.replace(tzinfo=offset or UTC).astimezone(UTC)


def iso7(ts: float) -> str:
    """Graph's UTC timestamps with seven fractional digits (2020-08-18T09:03:05.8339192Z), as To Do, events and
    subscriptions answer them."""
    return graph_datetime(dt.datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)) + "Z"
