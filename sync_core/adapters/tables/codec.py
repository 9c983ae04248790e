"""How values sit in Table Storage: RowKey parts and the property types the adapters store.

`key_part` escapes a caller's value so it can sit inside a RowKey next to `_` separators without two
different values ever producing the same key, and without the characters Table Storage forbids in keys
(/ \\ # ? and control characters).
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from azure.data.tables import EdmType, EntityProperty

from sync_core.domain.errors import StorageError

# Safe inside a RowKey and never a separator; everything else (including `_` and `~`) is escaped.
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.@+-")


def key_part(value: str) -> str:
    """Escape `value` for use inside a RowKey: injective, and keeps alphanumeric ids readable."""
    out: list[str] = []
    for byte in value.encode("utf-8"):
        out.append(chr(byte) if byte in _SAFE else f"~{byte:02x}")
    return "".join(out)


def unescape_key_part(value: str) -> str:
    raw = bytearray()
    index = 0
    while index < len(value):
        if value[index] == "~":
            raw.append(int(value[index + 1:index + 3], 16))
            index += 3
        else:
            raw.append(ord(value[index]))
            index += 1
    return raw.decode("utf-8")


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix` (for `lt` filters)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def as_int(value: Any) -> int:
    """Int64 properties come back as EntityProperty, Int32 ones as int."""
    if isinstance(value, EntityProperty):
        return int(value.value)
    return int(value)


def int64(value: int) -> EntityProperty:
    return EntityProperty(value, EdmType.INT64)


def iso(value: datetime | None) -> str:
    """Datetimes are stored as ISO strings: exact round trip (microseconds, tz or naive)."""
    return "" if value is None else value.isoformat()


def from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def etag_of(entity: Mapping[str, Any]) -> str:
    metadata = getattr(entity, "metadata", None) or {}
    etag = metadata.get("etag")
    if not etag:
        raise StorageError("storage returned an entity without an ETag")
    return str(etag)
