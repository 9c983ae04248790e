"""Calendar views: a calendar's events in a time window with recurring series expanded into occurrences,
`GET .../calendarView`, `GET .../events/{id}/instances`, and `GET /me/calendarView/delta` with Graph's window
semantics.

Instances (occurrences.py): a single event is one instance; a series master is not shown in a view, its
occurrences are.

Delta (event-delta.md): the first round returns every instance of the primary calendar in the window; the
window is fixed by the first call and carried by the tokens. Each later round reports, once, every instance that
appeared or changed since the previous round, and `{"id", "@removed": {"reason": "deleted"}}` for instances
that went away — deleted, cancelled, or moved out of the window by an edit — and, as the docs warn, for events
*outside* the window that were added, updated or deleted since the previous round. `$select`, `$filter`,
`$orderby`, `$expand` and `$search` are not supported on this function (the docs say so); they are refused with
400 so a client relying on them learns it here. `Prefer: odata.maxpagesize` sets the page size.

State. What the client has seen at the end of each round (a "baseline": instance key → version) is kept in the
emulator and persisted with --state-file; tokens are signed references to it. A token older than the delta
retention or issued before the mailbox's delta tokens were expired is answered 410 SyncStateNotFound, as
delta.py answers for other resources.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from m365_emulator.kernel.delta import DELTA_NAMES
from m365_emulator.kernel.emulator import Emulator, GraphContext, PersistedPart
from m365_emulator.kernel.graph import (
    GraphError,
    GraphResponse,
    apply_select,
    bad_request,
    max_page_size,
    not_found,
    page_body,
    parse_select,
)
from m365_emulator.kernel.odata_filter import compile_filter
from m365_emulator.kernel.timezones import UTC, parse_instant
from m365_emulator.resources.calendars import (
    KIND_CALENDAR,
    calendar_param,
    scoped_calendar,
    ensure_default_calendar,
    find_event,
    order_records,
)
from m365_emulator.resources.event_json import occurrence_id
from m365_emulator.resources.event_model import EVENT_PROPERTIES, preference_headers, response_zone
from m365_emulator.resources.occurrences import Instance, calendar_instances, expand, instance_json, utc_iso

DEFAULT_PAGE = 10
MAX_BASELINES_PER_USER = 500
UNSUPPORTED_DELTA_OPTIONS = ("$select", "$filter", "$orderby", "$expand", "$search")

# ------------------------------------------------------------------------------------- calendarView

def _query(ctx: GraphContext, name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in ctx.req.query.items() if k.lower() == lowered), None)


def window_from_query(ctx: GraphContext) -> tuple[dt.datetime, dt.datetime]:
    start, end = _query(ctx, "startDateTime"), _query(ctx, "endDateTime")
    if not start or not end:
        raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window specified by the query "
                                                       "string parameters StartDateTime and EndDateTime.")
    try:
        window = parse_instant(start), parse_instant(end)
    except GraphError:
        raise GraphError(400, "ErrorInvalidParameter", "The value of the parameter 'StartDateTime' or 'EndDateTime' "
                                                       "is not a valid date and time.") from None
    if window[1] <= window[0]:
        raise GraphError(400, "ErrorInvalidParameter", "The parameter 'EndDateTime' must be later than "
                                                       "'StartDateTime'.")
    return window


def get_calendar_view(ctx: GraphContext) -> GraphResponse:
    calendar_id = calendar_param(ctx)
    window = window_from_query(ctx)
    zone_name = response_zone(ctx)
    select = parse_select(ctx.req.query, EVENT_PROPERTIES, "event")
    records = [instance_json(ctx, i, zone_name) for i in calendar_instances(ctx.emu, ctx.user.id, calendar_id, window)]
    if "$filter" in ctx.req.query:
        predicate = compile_filter(ctx.req.query["$filter"])
        records = [r for r in records if predicate(r, {})]
    records = [apply_select(r, select) for r in order_records(records, ctx.req.query.get("$orderby"))]
    link = ctx.url(f"/calendars/{calendar_id}/calendarView" if "calendar_id" in ctx.params else "/calendarView")
    body = page_body(ctx.req.query, ctx.req.headers, records,
                     ctx.context_url(f"users('{ctx.user.id}')/calendarView"), link, DEFAULT_PAGE)
    return GraphResponse(200, body, preference_headers(zone_name))


def get_instances(ctx: GraphContext, scope: str = "any") -> GraphResponse:
    window = window_from_query(ctx)
    zone_name = response_zone(ctx)
    select = parse_select(ctx.req.query, EVENT_PROPERTIES, "event")
    coll, master = find_event(ctx.emu, ctx.user.id, ctx.params["event_id"], scoped_calendar(ctx, scope))
    with ctx.store.lock:
        found = expand(coll.id, master, window) if master.data.get("recurrence") else []
    records = [apply_select(instance_json(ctx, i, zone_name), select) for i in sorted(found, key=lambda i: i.start)]
    body = page_body(ctx.req.query, ctx.req.headers, records,
                     ctx.context_url(f"users('{ctx.user.id}')/events('{ctx.params['event_id']}')/instances"),
                     ctx.url(f"/events/{ctx.params['event_id']}/instances"), DEFAULT_PAGE)
    return GraphResponse(200, body, preference_headers(zone_name))


# --------------------------------------------------------------------------------------------- delta

@dataclass
class Seen:
    version: str
    immutable_id: str  # of the event or series
    regular_id: str
    original_start: str | None


@dataclass
class Baseline:
    """Where a client stands after a completed round: what it has been told about, for which window."""

    user_id: str
    calendar_id: str
    window: tuple[str, str]
    seen: dict[str, Seen]
    seq: int  # the calendar's change seq when the round that produced this baseline began
    issued: float
    epoch: int


@dataclass
class Round:
    """A round being paged: its entries are fixed when it begins."""

    user_id: str
    entries: list[Instance | Seen]  # an instance to send, or a Seen to report as removed
    baseline_id: str
    issued: float
    epoch: int


class CalendarViewDelta:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.lock = threading.Lock()
        self.baselines: dict[str, Baseline] = {}
        self.rounds: dict[str, Round] = {}

    # --------------------------------------------------------------------------- tokens

    def _sign(self, payload: dict[str, Any]) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        sig = hmac.new(self.emu.token_secret, b"calendarView|" + raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + base64.urlsafe_b64encode(sig).decode().rstrip("=")

    def _open(self, token: str) -> dict[str, Any]:
        try:
            raw_part, sig_part = token.split(".")
            raw = base64.urlsafe_b64decode(raw_part + "=" * (-len(raw_part) % 4))
            sig = base64.urlsafe_b64decode(sig_part + "=" * (-len(sig_part) % 4))
            expected = hmac.new(self.emu.token_secret, b"calendarView|" + raw, hashlib.sha256).digest()[:12]
            if not hmac.compare_digest(sig, expected):
                raise ValueError("signature")
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise ValueError("payload")
            return payload
        except (ValueError, TypeError):
            raise bad_request("The delta or skip token is malformed or was not issued by this service.",
                              "ErrorInvalidSyncStateData") from None

    @staticmethod
    def _lost() -> GraphError:
        return GraphError(410, "SyncStateNotFound", "The sync state generation is not found. The delta token is "
                                                    "expired and data must be synchronized again.")

    def _check_age(self, user_id: str, issued: float, epoch: int, owner: str) -> None:
        if owner != user_id:
            raise bad_request("The delta token was issued for another mailbox.", "ErrorInvalidSyncStateData")
        now = self.emu.core.clock.now()
        if epoch != self.emu.store.mailbox(user_id).delta_epoch or now - issued > self.emu.delta.retention_seconds:
            raise self._lost()

    # ---------------------------------------------------------------------------- rounds

    def _begin(self, ctx: GraphContext, calendar_id: str, window: tuple[dt.datetime, dt.datetime],
               previous: Baseline | None) -> tuple[str, Round]:
        user_id = ctx.user.id
        now = self.emu.core.clock.now()
        with ctx.store.lock:
            coll = ctx.store.collection(user_id, calendar_id, KIND_CALENDAR)
            if coll is None:
                raise not_found()
            current = {i.key: i for i in calendar_instances(self.emu, user_id, calendar_id, window)}
            entries: list[Instance | Seen] = []
            if previous is None:
                entries.extend(current.values())
            else:
                entries.extend(i for k, i in current.items()
                               if k not in previous.seen or previous.seen[k].version != i.version)
                entries.extend(s for k, s in previous.seen.items() if k not in current)
                reported = {s.immutable_id for s in entries if isinstance(s, Seen) and s.original_start is None}
                in_window = {i.master.immutable_id for i in current.values()}
                seen_before = {s.immutable_id for s in previous.seen.values()}
                # Events outside the window changed since the last round: reported as removed (event-delta.md).
                for item in coll.items.values():
                    if item.seq > previous.seq and item.immutable_id not in in_window | reported:
                        entries.append(Seen("", item.immutable_id, item.regular_id, None))
                        reported.add(item.immutable_id)
                for stone in coll.tombstones:
                    if stone.seq > previous.seq and stone.immutable_id not in reported | seen_before:
                        entries.append(Seen("", stone.immutable_id, stone.regular_id, None))
                        reported.add(stone.immutable_id)
            baseline = Baseline(user_id, calendar_id, (utc_iso(window[0]), utc_iso(window[1])),
                                {k: Seen(i.version, i.master.immutable_id, i.master.regular_id,
                                         utc_iso(i.original_start) if i.original_start else None)
                                 for k, i in current.items()},
                                coll.seq, now, ctx.store.mailbox(user_id).delta_epoch)
        with self.lock:
            self._prune(user_id)
            baseline_id = secrets.token_urlsafe(12)
            self.baselines[baseline_id] = baseline
            round_id = secrets.token_urlsafe(12)
            round_ = self.rounds[round_id] = Round(user_id, entries, baseline_id, now, baseline.epoch)
        self.emu.touch()
        return round_id, round_

    def _prune(self, user_id: str) -> None:
        now = self.emu.core.clock.now()
        retention = self.emu.delta.retention_seconds
        for store in (self.baselines, self.rounds):
            for key in [k for k, v in store.items() if now - v.issued > retention]:
                del store[key]
        for store in (self.baselines, self.rounds):
            mine = sorted((v.issued, k) for k, v in store.items() if v.user_id == user_id)
            for _, key in mine[: max(0, len(mine) - MAX_BASELINES_PER_USER)]:
                del store[key]

    def _render(self, ctx: GraphContext, entry: Instance | Seen, zone_name: str | None) -> dict[str, Any]:
        if isinstance(entry, Instance):
            return {"@odata.type": "#microsoft.graph.event", **instance_json(ctx, entry, zone_name)}
        series = entry.immutable_id if ctx.immutable else entry.regular_id
        event_id = series if entry.original_start is None else occurrence_id(
            series, dt.datetime.strptime(entry.original_start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))
        return {"@odata.type": "#microsoft.graph.event", "id": event_id, "@removed": {"reason": "deleted"}}

    def handle(self, ctx: GraphContext) -> GraphResponse:
        for name in UNSUPPORTED_DELTA_OPTIONS:
            if name in ctx.req.query:
                raise bad_request(f"The query parameter '{name}' is not supported with change tracking over the "
                                  "calendarView.", "ErrorInvalidUrlQuery")
        zone_name = response_zone(ctx)
        requested = max_page_size(ctx.req.headers)
        page_size = requested or self.emu.delta.default_page_size
        calendar_id = ensure_default_calendar(self.emu, ctx.user.id)
        skip, delta = ctx.req.query.get("$skiptoken"), ctx.req.query.get("$deltatoken")
        if skip is not None:
            payload = self._open(skip)
            with self.lock:
                round_ = self.rounds.get(str(payload.get("r")))
            if round_ is None:
                raise self._lost()
            self._check_age(ctx.user.id, round_.issued, round_.epoch, round_.user_id)
            round_id, offset = str(payload["r"]), int(payload.get("o", 0))
        else:
            if delta is not None:
                payload = self._open(delta)
                with self.lock:
                    baseline = self.baselines.get(str(payload.get("b")))
                if baseline is None:
                    raise self._lost()
                self._check_age(ctx.user.id, baseline.issued, baseline.epoch, baseline.user_id)
                window = (parse_instant(baseline.window[0]), parse_instant(baseline.window[1]))
                round_id, round_ = self._begin(ctx, baseline.calendar_id, window, baseline)
            else:
                round_id, round_ = self._begin(ctx, calendar_id, window_from_query(ctx), None)
            offset = 0
        page = round_.entries[offset: offset + page_size]
        body: dict[str, Any] = {"@odata.context": ctx.context_url("Collection(event)")}
        link = ctx.url("/calendarView/delta")
        if offset + page_size < len(round_.entries):
            token = self._sign({"r": round_id, "o": offset + page_size})
            body["@odata.nextLink"] = f"{link}?$skiptoken={quote(token, safe='')}"
        else:
            body["@odata.deltaLink"] = f"{link}?$deltatoken={quote(self._sign({'b': round_.baseline_id}), safe='')}"
        body["value"] = [self._render(ctx, e, zone_name) for e in page]
        applied = ([f"odata.maxpagesize={requested}"] if requested else []) + \
            ([f'outlook.timezone="{zone_name}"'] if zone_name else [])
        return GraphResponse(200, body, {"Preference-Applied": ", ".join(applied)} if applied else {})

    # ------------------------------------------------------------------------- persistence

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {k: {**asdict(v), "seen": {sk: asdict(sv) for sk, sv in v.seen.items()}}
                    for k, v in self.baselines.items()}

    def load(self, data: Any) -> None:
        with self.lock:
            self.baselines = {k: Baseline(v["user_id"], v["calendar_id"], tuple(v["window"]),  # type: ignore[arg-type]
                                          {sk: Seen(**sv) for sk, sv in v["seen"].items()},
                                          v["seq"], v["issued"], v["epoch"])
                              for k, v in (data or {}).items()}
            self.rounds.clear()

    def reset(self) -> None:
        with self.lock:
            self.baselines.clear()
            self.rounds.clear()


def register(emu: Emulator) -> None:
    r = emu.router
    views = CalendarViewDelta(emu)
    for name in DELTA_NAMES:
        r.add("GET", f"/calendarView/{name}", views.handle)
        r.add("GET", f"/calendar/calendarView/{name}", views.handle)
    for base in ("", "/calendar", "/calendars/{calendar_id}"):
        r.add("GET", f"{base}/calendarView", get_calendar_view)
    emu.persisted["calendar_view_delta"] = PersistedPart(views.dump, views.load, views.reset)
