"""Graph routes for Outlook contacts and contact folders (/me/contactFolders, /me/contacts, delta), over the
contact model in contacts.py."""
from __future__ import annotations

from typing import Any

from m365_emulator.kernel.delta import DELTA_NAMES, DeltaQuery, run_delta
from m365_emulator.kernel.emulator import Emulator, GraphContext
from m365_emulator.kernel.graph import (
    GraphResponse,
    apply_select,
    bad_request,
    not_found,
    page_body,
    parse_select,
    unknown_property,
)
from m365_emulator.kernel.odata_filter import canonicalise_filter, compile_filter
from m365_emulator.kernel.store import Collection, Item
from m365_emulator.resources.contacts import (
    CONTACT_PROPERTIES,
    DEFAULT_PAGE,
    FOLDER_PROPERTIES,
    KIND_FOLDER,
    ORDER,
    check_unique,
    filter_record,
    contact_json,
    create_contact,
    create_folder,
    delete_contact,
    delete_folder,
    ensure_default_folder,
    find_contact,
    folder_json,
    folders,
    render,
    update_contact,
)


# ------------------------------------------------------------------------------------------ handlers

def _folder(ctx: GraphContext) -> Collection:
    ensure_default_folder(ctx.emu, ctx.user.id)
    coll = ctx.store.collection(ctx.user.id, ctx.params["folder_id"], KIND_FOLDER)
    if coll is None:
        raise not_found()
    return coll


def _page(ctx: GraphContext, records: list[dict[str, Any]], context: str, link: str) -> GraphResponse:
    return GraphResponse(200, page_body(ctx.req.query, ctx.req.headers, records, context, link, DEFAULT_PAGE))


def _order(records: list[dict[str, Any]], orderby: str | None) -> list[dict[str, Any]]:
    if not orderby:
        return records
    for clause in reversed([c.strip() for c in orderby.split(",") if c.strip()]):
        name, _, direction = clause.partition(" ")
        records = sorted(records, key=lambda r: (r.get(name) is None, str(r.get(name) or "").lower()),
                         reverse=direction.strip().lower() == "desc")
    return records


def list_folders(ctx: GraphContext) -> GraphResponse:
    select = parse_select(ctx.req.query, FOLDER_PROPERTIES, "contactFolder")
    records = [folder_json(c) for c in folders(ctx.emu, ctx.user.id)]
    if "$filter" in ctx.req.query:
        predicate = compile_filter(ctx.req.query["$filter"], FOLDER_PROPERTIES)
        records = [r for r in records if predicate(r, {})]
    records = [apply_select(r, select, ("id",)) for r in _order(records, ctx.req.query.get("$orderby"))]
    return _page(ctx, records, ctx.context_url(f"users('{ctx.user.id}')/contactFolders"), ctx.url("/contactFolders"))


def post_folder(ctx: GraphContext) -> GraphResponse:
    body = ctx.req.json_object()
    unknown = set(body) - set(FOLDER_PROPERTIES) - {"@odata.type"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "contactFolder")
    coll = create_folder(ctx.emu, ctx.user.id, body.get("displayName"))
    return GraphResponse(201, {"@odata.context": ctx.context_url(f"users('{ctx.user.id}')/contactFolders/$entity"),
                               **folder_json(coll)})


def get_folder(ctx: GraphContext) -> GraphResponse:
    coll = _folder(ctx)
    select = parse_select(ctx.req.query, FOLDER_PROPERTIES, "contactFolder")
    return GraphResponse(200, {"@odata.context": ctx.context_url(f"users('{ctx.user.id}')/contactFolders/$entity"),
                               **apply_select(folder_json(coll), select, ("id",))})


def patch_folder(ctx: GraphContext) -> GraphResponse:
    coll = _folder(ctx)
    body = ctx.req.json_object()
    unknown = set(body) - set(FOLDER_PROPERTIES) - {"@odata.type"}
    if unknown:
        raise unknown_property(sorted(unknown)[0], "contactFolder")
    if "displayName" in body:
        name = body["displayName"]
        if not isinstance(name, str) or not name.strip():
            raise bad_request("The displayName of a contact folder must be a non-empty string.", "ErrorInvalidRequest")
        with ctx.store.lock:
            check_unique(ctx.emu, ctx.user.id, name, coll.id)
            ctx.store.update_collection(ctx.user.id, coll.id, {"displayName": name})
    return GraphResponse(200, {"@odata.context": ctx.context_url(f"users('{ctx.user.id}')/contactFolders/$entity"),
                               **folder_json(coll)})


def delete_folder_handler(ctx: GraphContext) -> GraphResponse:
    delete_folder(ctx.emu, ctx.user.id, _folder(ctx).id)
    return GraphResponse(204)


def _list_contacts(ctx: GraphContext, coll: Collection, link: str, context: str) -> GraphResponse:
    select = parse_select(ctx.req.query, CONTACT_PROPERTIES, "contact")
    with ctx.store.lock:
        items = sorted(coll.items.values(), key=lambda i: (i.created, i.immutable_id))
        if "$filter" in ctx.req.query:
            predicate = compile_filter(canonicalise_filter(ctx.req.query["$filter"]), CONTACT_PROPERTIES)
            items = [i for i in items if predicate(filter_record(i, coll.id), {})]
        orderby = ctx.req.query.get("$orderby")
        if orderby:
            by_id = {i.immutable_id: i for i in items}
            ordered = _order([{**contact_json(i, coll.id, True), "_iid": i.immutable_id} for i in items], orderby)
            items = [by_id[r["_iid"]] for r in ordered]
        records = [render(ctx, i, coll.id, select) for i in items]
    return _page(ctx, records, context, link)


def list_folder_contacts(ctx: GraphContext) -> GraphResponse:
    coll = _folder(ctx)
    return _list_contacts(ctx, coll, ctx.url(f"/contactFolders/{coll.id}/contacts"),
                          ctx.context_url(f"users('{ctx.user.id}')/contactFolders('{coll.id}')/contacts"))


def list_default_contacts(ctx: GraphContext) -> GraphResponse:
    fid = ensure_default_folder(ctx.emu, ctx.user.id)
    coll = ctx.store.collection(ctx.user.id, fid, KIND_FOLDER)
    assert coll is not None
    return _list_contacts(ctx, coll, ctx.url("/contacts"), ctx.context_url(f"users('{ctx.user.id}')/contacts"))


def _created(ctx: GraphContext, item: Item, folder_id: str, context: str) -> GraphResponse:
    return GraphResponse(201, {"@odata.context": context, **contact_json(item, folder_id, ctx.immutable)})


def post_folder_contact(ctx: GraphContext) -> GraphResponse:
    coll = _folder(ctx)
    item = create_contact(ctx.emu, ctx.user.id, coll.id, ctx.req.json_object())
    return _created(ctx, item, coll.id,
                    ctx.context_url(f"users('{ctx.user.id}')/contactFolders('{coll.id}')/contacts/$entity"))


def post_default_contact(ctx: GraphContext) -> GraphResponse:
    fid = ensure_default_folder(ctx.emu, ctx.user.id)
    item = create_contact(ctx.emu, ctx.user.id, fid, ctx.req.json_object())
    return _created(ctx, item, fid, ctx.context_url(f"users('{ctx.user.id}')/contacts/$entity"))


def _contact_in_scope(ctx: GraphContext) -> tuple[Collection, Item]:
    folder_id = None
    if "folder_id" in ctx.params:
        folder_id = _folder(ctx).id
    return find_contact(ctx.emu, ctx.user.id, ctx.params["contact_id"], folder_id)


def get_contact(ctx: GraphContext) -> GraphResponse:
    coll, item = _contact_in_scope(ctx)
    select = parse_select(ctx.req.query, CONTACT_PROPERTIES, "contact")
    return GraphResponse(200, {"@odata.context": ctx.context_url(f"users('{ctx.user.id}')/contacts/$entity"),
                               **render(ctx, item, coll.id, select)})


def patch_contact(ctx: GraphContext) -> GraphResponse:
    _, item = _contact_in_scope(ctx)
    updated = update_contact(ctx.emu, ctx.user.id, item.immutable_id, ctx.req.json_object(), ctx.req.headers.get("if-match"))
    coll, _ = find_contact(ctx.emu, ctx.user.id, updated.immutable_id)
    return GraphResponse(200, {"@odata.context": ctx.context_url(f"users('{ctx.user.id}')/contacts/$entity"),
                               **contact_json(updated, coll.id, ctx.immutable)})


def delete_contact_handler(ctx: GraphContext) -> GraphResponse:
    _, item = _contact_in_scope(ctx)
    delete_contact(ctx.emu, ctx.user.id, item.immutable_id, ctx.req.headers.get("if-match"))
    return GraphResponse(204)


def delta(ctx: GraphContext) -> GraphResponse:
    ensure_default_folder(ctx.emu, ctx.user.id)
    folder_id = ctx.params["folder_id"]
    with ctx.store.lock:
        coll = ctx.store.mailbox(ctx.user.id).collections.get(folder_id)
        if coll is None or coll.kind != KIND_FOLDER:
            raise not_found()

    def render_delta(item: Item, select: list[str] | None, immutable: bool) -> dict[str, Any]:
        return apply_select(contact_json(item, folder_id, immutable), select)

    query = DeltaQuery(ctx.store, ctx.emu.codec, ctx.emu.delta, ctx.user.id, folder_id,
                       link=ctx.url(f"/contactFolders/{folder_id}/contacts/delta"),
                       context=ctx.context_url("Collection(contact)"), render=render_delta,
                       parse_select=lambda q: parse_select(q, ORDER, "contact"))
    return run_delta(query, ctx.req)


def register(emu: Emulator) -> None:
    r = emu.router
    r.add("GET", "/contactFolders", list_folders)
    r.add("POST", "/contactFolders", post_folder)
    r.add("GET", "/contactFolders/{folder_id}", get_folder)
    r.add("PATCH", "/contactFolders/{folder_id}", patch_folder)
    r.add("DELETE", "/contactFolders/{folder_id}", delete_folder_handler)
    for name in DELTA_NAMES:
        r.add("GET", f"/contactFolders/{{folder_id}}/contacts/{name}", delta)
    r.add("GET", "/contactFolders/{folder_id}/contacts", list_folder_contacts)
    r.add("POST", "/contactFolders/{folder_id}/contacts", post_folder_contact)
    r.add("GET", "/contactFolders/{folder_id}/contacts/{contact_id}", get_contact)
    r.add("PATCH", "/contactFolders/{folder_id}/contacts/{contact_id}", patch_contact)
    r.add("DELETE", "/contactFolders/{folder_id}/contacts/{contact_id}", delete_contact_handler)
    r.add("GET", "/contacts", list_default_contacts)
    r.add("POST", "/contacts", post_default_contact)
    r.add("GET", "/contacts/{contact_id}", get_contact)
    r.add("PATCH", "/contacts/{contact_id}", patch_contact)
    r.add("DELETE", "/contacts/{contact_id}", delete_contact_handler)
    emu.state_parts.append(state_json)


def state_json(emu: Emulator, user_id: str) -> dict[str, Any]:
    """The mailbox's contacts for GET /_emulator/state/{userId}: both id kinds and the extended properties."""
    out = []
    for coll in folders(emu, user_id):
        with emu.store.lock:
            contacts = [{**contact_json(i, coll.id, False), "immutableId": i.immutable_id,
                         "singleValueExtendedProperties": [{"id": k, "value": v} for k, v in i.extended.items()]}
                        for i in sorted(coll.items.values(), key=lambda i: (i.created, i.immutable_id))]
            out.append({**folder_json(coll), "changeSeq": coll.seq, "contacts": contacts,
                        "tombstones": [vars(t) for t in coll.tombstones]})
    return {"contactFolders": out}
