"""Outlook-style paging of a plain list: `$top` (or the default page size), `$skip`, and an `@odata.nextLink` that
carries the request's other query options, as Exchange builds it for To Do tasks and calendar views."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from m365_emulator.graph_common import max_page_size, parse_skip, parse_top


def page_body(query: Mapping[str, str], headers: Mapping[str, str], records: list[dict[str, Any]], context: str,
              link: str, default_top: int) -> dict[str, Any]:
    """One page of `records`. `Prefer: odata.maxpagesize` sets the page size when `$top` is absent."""
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
