"""What a Graph answer means for one item, decided in one place for every kind of item.

- A delta item without an id cannot be synced or quarantined by name; one with "@removed" is a removal
  (its reason, "deleted" unless Graph says otherwise); anything else is an item to parse.
- A write succeeded on 2xx with a readable body; a delete also on 404 (already gone is what we wanted).
- A read found the item on 2xx, learnt it is gone on 404, and learnt nothing otherwise.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sync_core.adapters.graph.session import SubResponse
from sync_core.domain.errors import InvalidRecordError

Result = TypeVar("Result")
Parsed = TypeVar("Parsed")
# WriteResult: (key, ok, item=, status=, error=, retry_after=).
ResultType = Callable[..., Result]


def delta_items(items: list[Any], nameless: Callable[[], None] = lambda: None
                ) -> Iterator[tuple[str, str | None, Mapping[str, Any]]]:
    """(id, removal reason or None, item) of each delta item that has an id; `nameless()` for each that has none."""
    for item in items:
        ms_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(ms_id, str) or not ms_id:
            nameless()
            continue
        if "@removed" in item:
            removed = item.get("@removed")
            reason = removed.get("reason", "deleted") if isinstance(removed, dict) else "deleted"
            yield ms_id, str(reason), item
        else:
            yield ms_id, None, item


def succeeded(response: SubResponse) -> bool:
    return 200 <= response.status < 300


def read_results(ms_ids: Sequence[str], answered: Mapping[str, SubResponse], gone: Parsed,
                 parse: Callable[[Any], Parsed]) -> dict[str, Parsed]:
    """What a batch of GETs (sub-request ids: the positions in `ms_ids`) learnt of each item: `gone` on 404,
    parse(body) on 2xx. An item whose state could not be learnt (no answer, a failed GET, a body `parse`
    refuses) is left out: the caller must not take it for gone."""
    found: dict[str, Parsed] = {}
    for i, ms_id in enumerate(ms_ids):
        response = answered.get(str(i))
        if response is None:
            continue
        if response.status == 404:
            found[ms_id] = gone
        elif succeeded(response):
            try:
                found[ms_id] = parse(response.body)
            except InvalidRecordError:
                continue
    return found


def write_result(result: ResultType[Result], key: str, response: SubResponse, field: str,
                 parse: Callable[[Mapping[str, Any]], Parsed]) -> Result:
    """The result of a create or update: the item Graph answered (as `field`), or why it is not usable."""
    if succeeded(response) and isinstance(response.body, dict):
        try:
            parsed = parse(response.body)
        except InvalidRecordError as exc:
            return result(key, False, status=response.status, error=f"unreadable answer: {exc}")
        return result(key, True, status=response.status, **{field: parsed})
    return result(key, False, status=response.status, error=response.error_text, retry_after=response.retry_after)


def delete_result(result: ResultType[Result], key: str, response: SubResponse) -> Result:
    ok = succeeded(response) or response.status == 404  # already gone is what we wanted
    return result(key, ok, status=response.status, error=None if ok else response.error_text,
                  retry_after=response.retry_after)
