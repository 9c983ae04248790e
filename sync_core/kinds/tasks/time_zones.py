"""Time-zone names as Graph writes them in a dateTimeTimeZone: Windows ids ("Pakistan Standard Time") or IANA
names ("Asia/Karachi").

Windows ids map to IANA zones by Unicode CLDR's windowsZones.xml, as packaged by `tzlocal` (pinned in
requirements.txt) — the same mapping the emulator uses, so there is no hand-kept table to fall behind
Microsoft's list. zoneinfo then needs the IANA rules: the system's tz database, or the pinned `tzdata` package
where the system lacks one (or lacks the old link names CLDR still uses, such as "Asia/Calcutta").

What we send to Graph is unchanged: the user's IANA zone, which Graph accepts as it accepts Windows ids.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tzlocal.windows_tz import win_tz

from sync_core.domain.errors import InvalidRecordError

# Exchange matches Windows ids regardless of case.
_WINDOWS_BY_LOWER: dict[str, str] = {name.lower(): iana for name, iana in win_tz.items()}


def windows_zone_names() -> frozenset[str]:
    """Every Windows id we understand (CLDR's list)."""
    return frozenset(win_tz)


def iana_for(name: str) -> str:
    """The IANA name for a Windows id, or the name itself (assumed IANA) when it is not a Windows id."""
    text = name.strip()
    return _WINDOWS_BY_LOWER.get(text.lower(), text)


def zone_named(name: str) -> ZoneInfo:
    """An IANA or Windows zone name as a ZoneInfo; InvalidRecordError when unknown (never guessed)."""
    iana = iana_for(name) or "UTC"
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRecordError("unknown time zone in a dateTimeTimeZone") from None
