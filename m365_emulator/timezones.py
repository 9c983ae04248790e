"""Time zones as Outlook names them: Windows ids ("Pacific Standard Time") and IANA names ("America/Los_Angeles").

Graph accepts either in `dateTimeTimeZone.timeZone` and in `Prefer: outlook.timezone`; the emulator computes with
IANA rules (zoneinfo), so every Windows id needs its IANA zone. The table is Unicode CLDR's windowsZones.xml
mapping for territory "001" (the zone CLDR picks for each Windows id), plus other zones CLDR lists under the same
Windows ids so that IANA → Windows also works for common cities.

A name Graph does not know is answered as Exchange answers it: 400 TimeZoneNotSupportedException.
"""
from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from m365_emulator.graph_common import GraphError

UTC = dt.timezone.utc

# Windows id → IANA zone (CLDR windowsZones.xml, territory 001).
WINDOWS_TO_IANA: dict[str, str] = {
    "Dateline Standard Time": "Etc/GMT+12",
    "UTC-11": "Etc/GMT+11",
    "Aleutian Standard Time": "America/Adak",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Marquesas Standard Time": "Pacific/Marquesas",
    "Alaskan Standard Time": "America/Anchorage",
    "UTC-09": "Etc/GMT+9",
    "Pacific Standard Time (Mexico)": "America/Tijuana",
    "UTC-08": "Etc/GMT+8",
    "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix",
    "Mountain Standard Time (Mexico)": "America/Mazatlan",
    "Mountain Standard Time": "America/Denver",
    "Yukon Standard Time": "America/Whitehorse",
    "Central America Standard Time": "America/Guatemala",
    "Central Standard Time": "America/Chicago",
    "Easter Island Standard Time": "Pacific/Easter",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina",
    "SA Pacific Standard Time": "America/Bogota",
    "Eastern Standard Time (Mexico)": "America/Cancun",
    "Eastern Standard Time": "America/New_York",
    "Haiti Standard Time": "America/Port-au-Prince",
    "Cuba Standard Time": "America/Havana",
    "US Eastern Standard Time": "America/Indiana/Indianapolis",
    "Turks And Caicos Standard Time": "America/Grand_Turk",
    "Paraguay Standard Time": "America/Asuncion",
    "Atlantic Standard Time": "America/Halifax",
    "Venezuela Standard Time": "America/Caracas",
    "Central Brazilian Standard Time": "America/Cuiaba",
    "SA Western Standard Time": "America/La_Paz",
    "Pacific SA Standard Time": "America/Santiago",
    "Newfoundland Standard Time": "America/St_Johns",
    "Tocantins Standard Time": "America/Araguaina",
    "E. South America Standard Time": "America/Sao_Paulo",
    "SA Eastern Standard Time": "America/Cayenne",
    "Argentina Standard Time": "America/Argentina/Buenos_Aires",
    "Greenland Standard Time": "America/Nuuk",
    "Montevideo Standard Time": "America/Montevideo",
    "Magallanes Standard Time": "America/Punta_Arenas",
    "Saint Pierre Standard Time": "America/Miquelon",
    "Bahia Standard Time": "America/Bahia",
    "UTC-02": "Etc/GMT+2",
    "Azores Standard Time": "Atlantic/Azores",
    "Cape Verde Standard Time": "Atlantic/Cape_Verde",
    "UTC": "Etc/UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "Sao Tome Standard Time": "Africa/Sao_Tome",
    "Morocco Standard Time": "Africa/Casablanca",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "Jordan Standard Time": "Asia/Amman",
    "GTB Standard Time": "Europe/Bucharest",
    "Middle East Standard Time": "Asia/Beirut",
    "Egypt Standard Time": "Africa/Cairo",
    "E. Europe Standard Time": "Europe/Chisinau",
    "Syria Standard Time": "Asia/Damascus",
    "West Bank Standard Time": "Asia/Hebron",
    "South Africa Standard Time": "Africa/Johannesburg",
    "FLE Standard Time": "Europe/Kyiv",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Sudan Standard Time": "Africa/Juba",
    "Kaliningrad Standard Time": "Europe/Kaliningrad",
    "Sudan Standard Time": "Africa/Khartoum",
    "Libya Standard Time": "Africa/Tripoli",
    "Namibia Standard Time": "Africa/Windhoek",
    "Arabic Standard Time": "Asia/Baghdad",
    "Turkey Standard Time": "Europe/Istanbul",
    "Arab Standard Time": "Asia/Riyadh",
    "Belarus Standard Time": "Europe/Minsk",
    "Russian Standard Time": "Europe/Moscow",
    "E. Africa Standard Time": "Africa/Nairobi",
    "Volgograd Standard Time": "Europe/Volgograd",
    "Iran Standard Time": "Asia/Tehran",
    "Arabian Standard Time": "Asia/Dubai",
    "Astrakhan Standard Time": "Europe/Astrakhan",
    "Azerbaijan Standard Time": "Asia/Baku",
    "Russia Time Zone 3": "Europe/Samara",
    "Mauritius Standard Time": "Indian/Mauritius",
    "Saratov Standard Time": "Europe/Saratov",
    "Georgian Standard Time": "Asia/Tbilisi",
    "Caucasus Standard Time": "Asia/Yerevan",
    "Afghanistan Standard Time": "Asia/Kabul",
    "West Asia Standard Time": "Asia/Tashkent",
    "Ekaterinburg Standard Time": "Asia/Yekaterinburg",
    "Pakistan Standard Time": "Asia/Karachi",
    "Qyzylorda Standard Time": "Asia/Qyzylorda",
    "India Standard Time": "Asia/Kolkata",
    "Sri Lanka Standard Time": "Asia/Colombo",
    "Nepal Standard Time": "Asia/Kathmandu",
    "Central Asia Standard Time": "Asia/Bishkek",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "Omsk Standard Time": "Asia/Omsk",
    "Myanmar Standard Time": "Asia/Yangon",
    "SE Asia Standard Time": "Asia/Bangkok",
    "Altai Standard Time": "Asia/Barnaul",
    "W. Mongolia Standard Time": "Asia/Hovd",
    "North Asia Standard Time": "Asia/Krasnoyarsk",
    "N. Central Asia Standard Time": "Asia/Novosibirsk",
    "Tomsk Standard Time": "Asia/Tomsk",
    "China Standard Time": "Asia/Shanghai",
    "North Asia East Standard Time": "Asia/Irkutsk",
    "Singapore Standard Time": "Asia/Singapore",
    "W. Australia Standard Time": "Australia/Perth",
    "Taipei Standard Time": "Asia/Taipei",
    "Ulaanbaatar Standard Time": "Asia/Ulaanbaatar",
    "Aus Central W. Standard Time": "Australia/Eucla",
    "Transbaikal Standard Time": "Asia/Chita",
    "Tokyo Standard Time": "Asia/Tokyo",
    "North Korea Standard Time": "Asia/Pyongyang",
    "Korea Standard Time": "Asia/Seoul",
    "Yakutsk Standard Time": "Asia/Yakutsk",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "AUS Central Standard Time": "Australia/Darwin",
    "E. Australia Standard Time": "Australia/Brisbane",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "West Pacific Standard Time": "Pacific/Port_Moresby",
    "Tasmania Standard Time": "Australia/Hobart",
    "Vladivostok Standard Time": "Asia/Vladivostok",
    "Lord Howe Standard Time": "Australia/Lord_Howe",
    "Bougainville Standard Time": "Pacific/Bougainville",
    "Russia Time Zone 10": "Asia/Srednekolymsk",
    "Magadan Standard Time": "Asia/Magadan",
    "Norfolk Standard Time": "Pacific/Norfolk",
    "Sakhalin Standard Time": "Asia/Sakhalin",
    "Central Pacific Standard Time": "Pacific/Guadalcanal",
    "Russia Time Zone 11": "Asia/Kamchatka",
    "New Zealand Standard Time": "Pacific/Auckland",
    "UTC+12": "Etc/GMT-12",
    "Fiji Standard Time": "Pacific/Fiji",
    "Chatham Islands Standard Time": "Pacific/Chatham",
    "UTC+13": "Etc/GMT-13",
    "Tonga Standard Time": "Pacific/Tongatapu",
    "Samoa Standard Time": "Pacific/Apia",
    "Line Islands Standard Time": "Pacific/Kiritimati",
}

# Further IANA zones CLDR files under a Windows id (other territories and old spellings), for IANA → Windows.
_MORE_IANA: dict[str, tuple[str, ...]] = {
    "Pacific Standard Time": ("America/Vancouver", "PST8PDT", "US/Pacific"),
    "Mountain Standard Time": ("America/Edmonton", "America/Boise", "MST7MDT", "US/Mountain"),
    "Central Standard Time": ("America/Winnipeg", "America/Indiana/Knox", "CST6CDT", "US/Central"),
    "Eastern Standard Time": ("America/Toronto", "America/Detroit", "America/Nassau", "EST5EDT", "US/Eastern"),
    "US Eastern Standard Time": ("America/Indianapolis",),
    "Argentina Standard Time": ("America/Buenos_Aires",),
    "Greenland Standard Time": ("America/Godthab",),
    "UTC": ("UTC", "Etc/GMT", "GMT", "Etc/Universal", "Etc/Zulu", "Zulu"),
    "GMT Standard Time": ("Europe/Dublin", "Europe/Lisbon", "Atlantic/Canary", "Atlantic/Madeira", "Europe/Guernsey",
                          "Europe/Isle_of_Man", "Europe/Jersey"),
    "Greenwich Standard Time": ("Africa/Abidjan", "Africa/Accra", "Africa/Dakar"),
    "W. Europe Standard Time": ("Europe/Amsterdam", "Europe/Andorra", "Europe/Rome", "Europe/Stockholm",
                                "Europe/Vienna", "Europe/Zurich", "Europe/Oslo", "Europe/Luxembourg",
                                "Europe/Malta", "Europe/Monaco", "Europe/Vaduz", "Europe/San_Marino",
                                "Europe/Vatican", "Europe/Gibraltar", "Arctic/Longyearbyen", "Europe/Busingen"),
    "Central Europe Standard Time": ("Europe/Prague", "Europe/Belgrade", "Europe/Bratislava", "Europe/Ljubljana",
                                     "Europe/Podgorica", "Europe/Tirane"),
    "Romance Standard Time": ("Europe/Brussels", "Europe/Copenhagen", "Europe/Madrid", "Africa/Ceuta"),
    "Central European Standard Time": ("Europe/Sarajevo", "Europe/Skopje", "Europe/Zagreb"),
    "GTB Standard Time": ("Europe/Athens", "Asia/Nicosia", "Asia/Famagusta"),
    "FLE Standard Time": ("Europe/Kiev", "Europe/Helsinki", "Europe/Riga", "Europe/Sofia", "Europe/Tallinn",
                          "Europe/Vilnius", "Europe/Mariehamn", "Europe/Uzhgorod", "Europe/Zaporozhye"),
    "Israel Standard Time": ("Asia/Tel_Aviv",),
    "Russian Standard Time": ("Europe/Simferopol", "Europe/Kirov"),
    "Arab Standard Time": ("Asia/Kuwait", "Asia/Qatar", "Asia/Bahrain", "Asia/Aden"),
    "Arabian Standard Time": ("Asia/Muscat",),
    "India Standard Time": ("Asia/Calcutta",),
    "Nepal Standard Time": ("Asia/Katmandu",),
    "Myanmar Standard Time": ("Asia/Rangoon",),
    "SE Asia Standard Time": ("Asia/Jakarta", "Asia/Ho_Chi_Minh", "Asia/Saigon", "Asia/Phnom_Penh",
                              "Asia/Vientiane"),
    "China Standard Time": ("Asia/Hong_Kong", "Asia/Macau", "Asia/Chongqing", "PRC"),
    "Singapore Standard Time": ("Asia/Kuala_Lumpur", "Asia/Manila", "Asia/Makassar", "Asia/Brunei"),
    "Tokyo Standard Time": ("Japan",),
    "AUS Eastern Standard Time": ("Australia/Melbourne", "Australia/Canberra", "Australia/ACT", "Australia/NSW"),
    "E. Australia Standard Time": ("Australia/Lindeman", "Australia/Queensland"),
    "New Zealand Standard Time": ("Antarctica/McMurdo", "NZ"),
    "E. Africa Standard Time": ("Africa/Addis_Ababa", "Africa/Dar_es_Salaam", "Africa/Kampala",
                                "Africa/Mogadishu", "Indian/Antananarivo"),
    "South Africa Standard Time": ("Africa/Harare", "Africa/Maputo", "Africa/Lusaka", "Africa/Kigali"),
    "W. Central Africa Standard Time": ("Africa/Algiers", "Africa/Tunis", "Africa/Kinshasa", "Africa/Luanda"),
    "Turkey Standard Time": ("Asia/Istanbul", "Turkey"),
    "Hawaiian Standard Time": ("US/Hawaii",),
    "Alaskan Standard Time": ("America/Juneau", "US/Alaska"),
    "SA Pacific Standard Time": ("America/Lima", "America/Panama", "America/Jamaica", "America/Guayaquil"),
    "SA Western Standard Time": ("America/Puerto_Rico", "America/Santo_Domingo", "America/Manaus"),
    "Central America Standard Time": ("America/Costa_Rica", "America/El_Salvador", "America/Managua",
                                      "America/Tegucigalpa"),
    "Central Standard Time (Mexico)": ("America/Monterrey", "America/Merida"),
}

_BY_LOWER_WINDOWS = {name.lower(): name for name in WINDOWS_TO_IANA}
_IANA_TO_WINDOWS: dict[str, str] = {}
for _win, _iana in WINDOWS_TO_IANA.items():
    _IANA_TO_WINDOWS.setdefault(_iana.lower(), _win)
for _win, _zones in _MORE_IANA.items():
    for _zone in _zones:
        _IANA_TO_WINDOWS.setdefault(_zone.lower(), _win)


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
    windows = _BY_LOWER_WINDOWS.get(text.lower())
    if windows is not None:
        found = _iana_zone(WINDOWS_TO_IANA[windows])
    else:
        found = _iana_zone(text)
    if found is None:
        raise not_supported(text)
    return found


def is_known(name: str | None) -> bool:
    try:
        zone(name)
        return True
    except GraphError:
        return False


def windows_name(name: str) -> str | None:
    """The Windows id for a Windows or IANA name, or None when CLDR files no Windows id under it."""
    text = name.strip()
    windows = _BY_LOWER_WINDOWS.get(text.lower())
    if windows is not None:
        return windows
    return _IANA_TO_WINDOWS.get(text.lower())


def iana_name(name: str) -> str | None:
    """The IANA zone for a Windows id (CLDR's territory-001 choice), or the IANA name itself if valid."""
    text = name.strip()
    windows = _BY_LOWER_WINDOWS.get(text.lower())
    if windows is not None:
        return WINDOWS_TO_IANA[windows]
    return text if _iana_zone(text) is not None else None


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
