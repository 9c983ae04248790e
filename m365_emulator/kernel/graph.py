"""What every Graph route shares: requests and responses, Graph's error JSON, ids and change keys,
Prefer headers, `$select`, paging, extended-property ids, and the checks every Outlook body shares (unknown members,
wrong types, enums, itemBody, dateTimeTimeZone). The `$filter` subset is in odata_filter.py.

A Graph request reaches a handler as a `GraphRequest` whether it came over HTTP or inside a `$batch`,
so one code path serves both. Handlers raise `GraphError`; the pipeline turns it into Graph's error
envelope (`{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`,
as in Microsoft's error.response.json).
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
ERROR_JSON = "application/json"


class GraphError(Exception):
    """An error Graph answers with its error envelope."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
                 inner: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.inner = dict(inner or {})


class DropConnection(Exception):
    """Raised to make the HTTP layer close the TCP connection without any response (fault injection)."""


def not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


@dataclass
class GraphRequest:
    """One Graph call, top-level or a `$batch` step. `path` is below /v1.0, decoded, without the query."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    in_batch: bool = False
    batch_id: str | None = None
    base_url: str = "https://graph.microsoft.com/v1.0"
    client: tuple[str, int] | None = None

    @property
    def query_string(self) -> str:
        return "&".join(f"{k}={v}" for k, v in self.query.items())

    def json(self) -> Any:
        if not self.body.strip():
            raise bad_request("Empty Payload. JSON content expected.")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set "
                              "and payload is of valid JSON format.") from None

    def json_object(self) -> dict[str, Any]:
        payload = self.json()
        if not isinstance(payload, dict):
            raise bad_request("The request payload must be a JSON object.", "RequestBodyRead")
        return payload


@dataclass
class GraphResponse:
    status: int
    body: Any = None  # JSON-able; None means no body
    headers: dict[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body, ensure_ascii=False).encode()


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """A Graph URL (absolute, /v1.0-relative, or relative without a slash as JSON batching allows)
    as its decoded path below /v1.0 and its query options."""
    parts = urlsplit(url)
    path = parts.path
    if parts.scheme or parts.netloc or path.startswith(("/v1.0/", "/beta/")) or path in ("/v1.0", "/beta"):
        path = re.sub(r"^/(v1\.0|beta)(?=/|$)", "", path)
    if not path.startswith("/"):
        path = "/" + path
    return unquote(path), dict(parse_qsl(parts.query, keep_blank_values=True))


# ---------------------------------------------------------------------------------------------- time

def iso(ts: float) -> str:
    """Graph's UTC timestamp form: 2014-10-19T23:08:24Z."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def inner_date(ts: float) -> str:
    """innerError.date has no zone designator in Microsoft's examples (2020-08-18T12:51:51)."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def error_body(err: GraphError, request_id: str, client_request_id: str, now: float) -> dict[str, Any]:
    inner: dict[str, str] = {"date": inner_date(now), "request-id": request_id, "client-request-id": client_request_id}
    inner.update(err.inner)
    return {"error": {"code": err.code, "message": err.message, "innerError": inner}}


# ----------------------------------------------------------------------------------------- ids, keys

def new_item_id() -> str:
    """An Exchange-looking item id (URL-safe base64, so it survives a URL path segment unencoded)."""
    return "AAMkAD" + base64.urlsafe_b64encode(secrets.token_bytes(45)).decode()


def new_folder_id() -> str:
    return "AAMkAD" + base64.urlsafe_b64encode(secrets.token_bytes(33)).decode() + "AAA="


def new_change_key() -> str:
    return "EQAAABYAAAA" + base64.b64encode(secrets.token_bytes(12)).decode()


def etag(change_key: str) -> str:
    return f'W/"{change_key}"'


def etag_matches(header: str, change_key: str) -> bool:
    """If-Match accepts `*`, a weak or strong etag, or a bare change key; any listed value may match."""
    for candidate in (c.strip() for c in header.split(",")):
        if candidate == "*":
            return True
        value = candidate[2:] if candidate.startswith("W/") else candidate
        if value.strip('"') == change_key:
            return True
    return False


def new_request_id() -> str:
    return str(uuid.uuid4())


# ------------------------------------------------------------------------------------------- Prefer

def prefer_values(headers: Mapping[str, str]) -> dict[str, str]:
    """All Prefer preferences (comma-separated, possibly quoted) as lower-case name → unquoted value."""
    raw = headers.get("prefer", "")
    found: dict[str, str] = {}
    for part in re.findall(r'(?:[^,"]|"[^"]*")+', raw):
        name, _, value = part.strip().partition("=")
        if name:
            found[name.strip().lower()] = value.strip().strip('"')
    return found


def wants_immutable_ids(headers: Mapping[str, str]) -> bool:
    return prefer_values(headers).get("idtype", "").lower() == "immutableid"


def max_page_size(headers: Mapping[str, str]) -> int | None:
    value = prefer_values(headers).get("odata.maxpagesize")
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise bad_request(f"Invalid odata.maxpagesize preference '{value}'.")
    return int(value)


# ------------------------------------------------------------------------------------------- $select

def parse_select(query: Mapping[str, str], known: Iterable[str], type_name: str) -> list[str] | None:
    """`$select` as a list of property names, checked against the resource's properties
    (Graph answers 400 for a property the type does not have)."""
    raw = query.get("$select")
    if raw is None or not raw.strip():
        return None
    by_lower = {name.lower(): name for name in known}
    chosen: list[str] = []
    for name in (n.strip() for n in raw.split(",")):
        if not name:
            continue
        proper = by_lower.get(name.lower())
        if proper is None:
            raise bad_request(f"Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'.",
                              "RequestBroker--ParseUri")
        if proper not in chosen:
            chosen.append(proper)
    return chosen


def apply_select(resource: dict[str, Any], select: list[str] | None, always: Iterable[str] = ("id", "@odata.etag")) -> dict[str, Any]:
    """Keep the selected properties; Graph always returns the id and etag of an Outlook item."""
    if select is None:
        return resource
    keep = set(select) | set(always)
    return {k: v for k, v in resource.items() if k in keep}


def parse_top(query: Mapping[str, str], default: int, maximum: int = 1000) -> int:
    raw = query.get("$top")
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise bad_request(f"Invalid value '{raw}' for $top query option.", "ErrorInvalidUrlQuery")
    return min(int(raw), maximum)


def page_body(query: Mapping[str, str], headers: Mapping[str, str], records: list[dict[str, Any]], context: str,
              link: str, default_top: int) -> dict[str, Any]:
    """One page of a list as Outlook pages it: `$top` (else `Prefer: odata.maxpagesize`, else the default),
    `$skip`, `$count=true`, and an `@odata.nextLink` that carries the request's other query options."""
    top = parse_top(query, max_page_size(headers) or default_top)
    skip = parse_skip(query)
    body: dict[str, Any] = {"@odata.context": context}
    if query.get("$count", "").lower() == "true":
        body["@odata.count"] = len(records)
    body["value"] = records[skip: skip + top]
    if skip + top < len(records):
        options = {k: v for k, v in query.items() if k not in ("$skip", "$top")}
        options.update({"$top": str(top), "$skip": str(skip + top)})
        body["@odata.nextLink"] = link + "?" + "&".join(f"{k}={quote(v, safe='$,()=:/@')}" for k, v in options.items())
    return body


def parse_skip(query: Mapping[str, str]) -> int:
    raw = query.get("$skip", "0")
    if not raw.isdigit():
        raise bad_request(f"Invalid value '{raw}' for $skip query option.", "ErrorInvalidUrlQuery")
    return int(raw)


# ------------------------------------------------------------------------------ extended properties

_EXT_ID = re.compile(
    r"^\s*(?P<type>[A-Za-z]+)\s+(?:(?P<guid>\{[0-9A-Fa-f-]{36}\})\s+(?P<kind>Name|Id)\s+(?P<name>.+?)|(?P<tag>0x[0-9A-Fa-f]{1,4}))\s*$")


def canonical_extended_id(raw: str) -> str:
    """Exchange compares property ids case-insensitively in type, GUID and the Name/Id keyword;
    return one canonical spelling so lookups and filters agree."""
    match = _EXT_ID.match(raw or "")
    if not match:
        raise bad_request(f"The extended property id '{raw}' is not valid.", "ErrorInvalidProperty")
    ptype = match["type"][0].upper() + match["type"][1:]
    if match["tag"]:
        return f"{ptype} {match['tag'].lower()}"
    return f"{ptype} {match['guid'].lower()} {match['kind'].capitalize()} {match['name']}"


def parse_extended_properties(value: Any) -> dict[str, str]:
    if not isinstance(value, list):
        raise bad_request("singleValueExtendedProperties must be a collection.", "RequestBodyRead")
    found: dict[str, str] = {}
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or "value" not in entry:
            raise bad_request("Each singleValueExtendedProperty needs an 'id' and a 'value'.", "RequestBodyRead")
        extra = set(entry) - {"id", "value", "@odata.type"}
        if extra:
            raise bad_request(f"The property '{sorted(extra)[0]}' does not exist on type "
                              "'microsoft.graph.singleValueLegacyExtendedProperty'.", "RequestBodyRead")
        found[canonical_extended_id(entry["id"])] = "" if entry["value"] is None else str(entry["value"])
    return found


# ----------------------------------------------------------------------------------- body validation

def unknown_property(name: str, type_name: str) -> GraphError:
    return bad_request(f"The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to "
                       "only use property names that are defined by the type or mark the type as open type.",
                       "RequestBodyRead")


def wrong_type(name: str, expected: str) -> GraphError:
    return bad_request(f"Cannot convert the literal value of property '{name}' to the expected type '{expected}'.",
                       "RequestBodyRead")


def enum_value(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """`value` spelled as in `allowed` (Graph matches enum members case-insensitively)."""
    if isinstance(value, str):
        for candidate in allowed:
            if candidate.lower() == value.lower():
                return candidate
    raise bad_request(f"Requested value '{value}' was not found.", "RequestBodyRead")


def item_body(value: Any) -> tuple[str, str] | None:
    """An itemBody member of a request body as (contentType, content); None when it is absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type("body", "microsoft.graph.itemBody")
    extra = set(value) - {"content", "contentType", "@odata.type"}
    if extra:
        raise unknown_property(sorted(extra)[0], "itemBody")
    content = value.get("content") or ""
    if not isinstance(content, str):
        raise wrong_type("content", "Edm.String")
    return enum_value("contentType", value.get("contentType") or "text", ("text", "html")), content


def date_time_time_zone(name: str, value: Any) -> dict[str, Any]:
    """A dateTimeTimeZone member of a request body, checked for its shape: a string `dateTime`, an optional
    `timeZone`, nothing else."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise wrong_type(name, "microsoft.graph.dateTimeTimeZone")
    extra = set(value) - {"dateTime", "timeZone", "@odata.type"}
    if extra:
        raise unknown_property(sorted(extra)[0], "dateTimeTimeZone")
    return value
