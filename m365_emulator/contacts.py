"""Outlook contacts and contact folders on Graph v1.0, for /me and /users/{id}.

Each contact folder is a `store.Collection` (kind "contactFolder"); each contact an `Item` (kind "contact") whose
`data` holds the properties the client set, and whose `extended` holds singleValueExtendedProperties.
Every mailbox has a default "Contacts" folder: `/me/contacts` lists and creates there, and reaches any
contact by id. Folders are listed like Microsoft's example (the default folder included).

Leniencies, documented: the docs' placeholder payloads are accepted as published, so a `birthday` that is
not a date is stored verbatim; read-only properties sent in a body (id, parentFolderId, changeKey, ...) are
ignored rather than refused. Unknown properties are refused with Graph's RequestBodyRead error.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

from m365_emulator.app import Emulator, GraphContext
from m365_emulator.delta import DeltaQuery, run_delta
from m365_emulator.graph_common import (
    GraphError,
    GraphResponse,
    apply_select,
    bad_request,
    canonical_extended_id,
    compile_filter,
    etag,
    etag_matches,
    iso,
    new_folder_id,
    not_found,
    parse_extended_properties,
    page_body,
    parse_select,
)
from m365_emulator.store import Collection, Item

KIND_FOLDER = "contactFolder"
KIND_CONTACT = "contact"
DEFAULT_FOLDER_NAME = "Contacts"
DEFAULT_PAGE = 10  # Graph's default page size for Outlook collections

STRINGS = ("fileAs", "displayName", "givenName", "initials", "middleName", "nickName", "surname", "title",
           "yomiGivenName", "yomiSurname", "yomiCompanyName", "generation", "jobTitle", "companyName", "department",
           "officeLocation", "profession", "businessHomePage", "assistantName", "manager", "mobilePhone",
           "spouseName", "personalNotes")
STRING_LISTS = ("categories", "imAddresses", "homePhones", "businessPhones", "children")
ADDRESSES = ("homeAddress", "businessAddress", "otherAddress")
ADDRESS_FIELDS = ("street", "city", "state", "countryOrRegion", "postalCode")
READ_ONLY = ("id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId", "@odata.etag",
             "@odata.context", "@odata.type", "@odata.id")
# The order of Microsoft's contact-get example, so responses read like Graph's.
ORDER = ("id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "parentFolderId", "birthday",
         "fileAs", "displayName", "givenName", "initials", "middleName", "nickName", "surname", "title",
         "yomiGivenName", "yomiSurname", "yomiCompanyName", "generation", "emailAddresses", "imAddresses",
         "jobTitle", "companyName", "department", "officeLocation", "profession", "businessHomePage",
         "assistantName", "manager", "homePhones", "mobilePhone", "businessPhones", "homeAddress", "businessAddress",
         "otherAddress", "spouseName", "personalNotes", "children")
CONTACT_PROPERTIES = ORDER + ("singleValueExtendedProperties",)
FOLDER_PROPERTIES = ("id", "displayName", "parentFolderId")


# ---------------------------------------------------------------------------------------- validation

def _unknown(name: str, type_name: str) -> GraphError:
    return bad_request(f"The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to "
                       "only use property names that are defined by the type or mark the type as open type.",
                       "RequestBodyRead")


def _wrong_type(name: str, expected: str) -> GraphError:
    return bad_request(f"Cannot convert the literal value of property '{name}' to the expected type '{expected}'.",
                       "RequestBodyRead")


def parse_contact(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str] | None]:
    """A contact POST/PATCH body as (properties to set, extended properties to set or None)."""
    changes: dict[str, Any] = {}
    extended: dict[str, str] | None = None
    for name, value in body.items():
        if name in READ_ONLY or name.startswith("@odata."):
            continue
        if name == "singleValueExtendedProperties":
            extended = parse_extended_properties(value)
        elif name in STRINGS:
            if value is not None and not isinstance(value, str):
                raise _wrong_type(name, "Edm.String")
            changes[name] = value
        elif name in STRING_LISTS:
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _wrong_type(name, "Collection(Edm.String)")
            changes[name] = list(value)
        elif name in ADDRESSES:
            changes[name] = _address(name, value)
        elif name == "emailAddresses":
            changes[name] = _emails(value)
        elif name == "birthday":
            changes[name] = _birthday(value)
        else:
            raise _unknown(name, "contact")
    return changes, extended


def _address(name: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong_type(name, "microsoft.graph.physicalAddress")
    address: dict[str, str] = {}
    for key, part in value.items():
        if key.startswith("@odata."):
            continue
        if key not in ADDRESS_FIELDS:
            raise _unknown(key, "physicalAddress")
        if part is not None and not isinstance(part, str):
            raise _wrong_type(key, "Edm.String")
        if part is not None:
            address[key] = part
    return address


def _emails(value: Any) -> list[dict[str, str | None]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _wrong_type("emailAddresses", "Collection(microsoft.graph.emailAddress)")
    emails: list[dict[str, str | None]] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise _wrong_type("emailAddresses", "microsoft.graph.emailAddress")
        for key, part in entry.items():
            if key.startswith("@odata."):
                continue
            if key not in ("name", "address"):
                raise _unknown(key, "emailAddress")
            if part is not None and not isinstance(part, str):
                raise _wrong_type(key, "Edm.String")
        emails.append({"name": entry.get("name"), "address": entry.get("address")})
    return emails


def _birthday(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong_type("birthday", "Edm.DateTimeOffset")
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return dt.date.fromisoformat(value).strftime("%Y-%m-%dT00:00:00Z")
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # the docs' "datetime-value" placeholder: kept verbatim (see module docstring)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _computed_display_name(data: dict[str, Any]) -> str:
    """Exchange fills displayName from the name parts when a client leaves it out (Microsoft's create example
    sends givenName and surname and gets "Pavel Bansky")."""
    names = " ".join(p for p in (data.get("givenName"), data.get("middleName"), data.get("surname")) if p)
    if names:
        return names
    if data.get("companyName"):
        return str(data["companyName"])
    emails = data.get("emailAddresses") or []
    return next((e.get("address") or "" for e in emails if e.get("address")), "")


# ------------------------------------------------------------------------------------------ folders

def ensure_default_folder(emu: Emulator, user_id: str) -> str:
    """The mailbox's default Contacts folder id, creating the folder on first use."""
    with emu.store.lock:
        box = emu.store.mailbox(user_id)
        fid = box.extra.get("contacts_default")
        if fid is None or fid not in box.collections:
            root = box.extra.setdefault("contacts_root", new_folder_id())
            coll = emu.store.add_collection(user_id, KIND_FOLDER, {"displayName": DEFAULT_FOLDER_NAME,
                                                                    "parentFolderId": root},
                                            lambda cid: _resource(user_id, cid))
            box.extra["contacts_default"] = fid = coll.id
        return str(fid)


def _resource(user_id: str, folder_id: str) -> str:
    return f"/users/{user_id}/contactFolders/{folder_id}/contacts"


def folders(emu: Emulator, user_id: str) -> list[Collection]:
    default = ensure_default_folder(emu, user_id)
    with emu.store.lock:
        found = list(emu.store.mailbox(user_id).live_collections(KIND_FOLDER))
    return sorted(found, key=lambda c: (c.id != default, c.created, c.id))


def create_folder(emu: Emulator, user_id: str, display_name: Any) -> Collection:
    if not isinstance(display_name, str) or not display_name.strip():
        raise bad_request("The displayName of a contact folder must be a non-empty string.", "ErrorInvalidRequest")
    default = ensure_default_folder(emu, user_id)
    with emu.store.lock:
        _check_unique(emu, user_id, display_name, None)
        return emu.store.add_collection(user_id, KIND_FOLDER, {"displayName": display_name, "parentFolderId": default},
                                        lambda cid: _resource(user_id, cid))


def _check_unique(emu: Emulator, user_id: str, name: str, except_id: str | None) -> None:
    for coll in emu.store.mailbox(user_id).live_collections(KIND_FOLDER):
        if coll.id != except_id and str(coll.props.get("displayName", "")).lower() == name.lower():
            raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")


def delete_folder(emu: Emulator, user_id: str, folder_id: str) -> None:
    if folder_id == ensure_default_folder(emu, user_id):
        raise GraphError(403, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
    if emu.store.collection(user_id, folder_id, KIND_FOLDER) is None:
        raise not_found()
    emu.store.delete_collection(user_id, folder_id)


def folder_json(coll: Collection) -> dict[str, Any]:
    return {"id": coll.id, "displayName": coll.props.get("displayName"), "parentFolderId": coll.props.get("parentFolderId")}


# ----------------------------------------------------------------------------------------- contacts

def create_contact(emu: Emulator, user_id: str, folder_id: str, body: dict[str, Any]) -> Item:
    if emu.store.collection(user_id, folder_id, KIND_FOLDER) is None:
        raise not_found()
    changes, extended = parse_contact(body)
    if not changes.get("displayName"):
        changes["displayName"] = _computed_display_name(changes)
    return emu.store.create_item(user_id, folder_id, KIND_CONTACT, changes, extended)


def update_contact(emu: Emulator, user_id: str, contact_id: str, body: dict[str, Any],
                   if_match: str | None = None) -> Item:
    with emu.store.lock:
        found = find_contact(emu, user_id, contact_id)
        _check_if_match(found[1], if_match)
        changes, extended = parse_contact(body)
        return emu.store.update_item(user_id, found[1].immutable_id, {**found[1].data, **changes}, extended)


def delete_contact(emu: Emulator, user_id: str, contact_id: str, if_match: str | None = None) -> None:
    with emu.store.lock:
        _, item = find_contact(emu, user_id, contact_id)
        _check_if_match(item, if_match)
        emu.store.delete_item(user_id, item.immutable_id)


def move_contact(emu: Emulator, user_id: str, contact_id: str, destination_id: str) -> Item:
    """What dragging a contact to another folder in Outlook does (Graph has no move for contacts)."""
    with emu.store.lock:
        _, item = find_contact(emu, user_id, contact_id)
        if emu.store.collection(user_id, destination_id, KIND_FOLDER) is None:
            raise not_found()
        return emu.store.move_item(user_id, item.immutable_id, destination_id)


def find_contact(emu: Emulator, user_id: str, contact_id: str, folder_id: str | None = None) -> tuple[Collection, Item]:
    found = emu.store.find(user_id, contact_id)
    if found is None or found[1].kind != KIND_CONTACT or (folder_id is not None and found[0].id != folder_id):
        raise not_found()
    return found


def _check_if_match(item: Item, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, item.change_key):
        raise GraphError(412, "ErrorIrresolvableConflict",
                         "The send or update operation could not be performed because the change key passed in the "
                         "request does not match the current change key for the item.")


def contact_json(item: Item, folder_id: str, immutable: bool) -> dict[str, Any]:
    """The whole contact as Graph returns it: every property, unset ones as null, [] or {}."""
    data = item.data
    out: dict[str, Any] = {"@odata.etag": etag(item.change_key)}
    for name in ORDER:
        if name == "id":
            out[name] = item.reported_id(immutable)
        elif name == "createdDateTime":
            out[name] = iso(item.created)
        elif name == "lastModifiedDateTime":
            out[name] = iso(item.last_modified)
        elif name == "changeKey":
            out[name] = item.change_key
        elif name == "parentFolderId":
            out[name] = folder_id
        elif name in STRING_LISTS or name == "emailAddresses":
            out[name] = list(data.get(name) or [])
        elif name in ADDRESSES:
            out[name] = dict(data.get(name) or {})
        else:
            out[name] = data.get(name)
    return out


def _extended_json(item: Item, expand: str | None) -> list[dict[str, str]] | None:
    """`$expand=singleValueExtendedProperties($filter=id eq '...')`: the matching properties, or None when the
    request did not expand them."""
    if expand is None:
        return None
    match = re.fullmatch(r"\s*singleValueExtendedProperties\s*(?:\((?P<opts>.*)\))?\s*", expand, re.IGNORECASE | re.DOTALL)
    if match is None:
        raise bad_request(f"Parsing OData Select and Expand failed: Could not find a property named "
                          f"'{expand.split('(')[0].strip()}' on type 'microsoft.graph.contact'.", "BadRequest")
    props = [{"id": k, "value": v} for k, v in item.extended.items()]
    opts = match["opts"]
    if opts:
        filt = re.fullmatch(r"\s*\$filter\s*=\s*(?P<expr>.+)", opts, re.DOTALL)
        if filt is None:
            raise bad_request(f"Unsupported expand options '{opts}'.")
        predicate = compile_filter(_canonicalise_filter(filt["expr"]), ("id", "value"))
        props = [p for p in props if predicate(p, {})]
    return props


def _filter_record(item: Item, folder_id: str) -> dict[str, Any]:
    record = contact_json(item, folder_id, False)
    record["singleValueExtendedProperties"] = [{"id": k, "value": v} for k, v in item.extended.items()]
    return record


def _canonicalise_filter(text: str) -> str:
    """Extended-property ids inside a filter compare against stored canonical ids."""
    def fix(m: re.Match[str]) -> str:
        literal = m.group(2).replace("''", "'")
        try:
            canonical = canonical_extended_id(literal)
        except GraphError:
            return m.group(0)
        return m.group(1) + "'" + canonical.replace("'", "''") + "'"
    return re.sub(r"(\bid\s+eq\s+)'((?:[^']|'')*)'", fix, text, flags=re.IGNORECASE)


def render(ctx: GraphContext, item: Item, folder_id: str, select: list[str] | None) -> dict[str, Any]:
    out = apply_select(contact_json(item, folder_id, ctx.immutable), [s for s in select if s != "singleValueExtendedProperties"]
                       if select is not None else None)
    extended = _extended_json(item, ctx.req.query.get("$expand"))
    if extended is not None:
        out["singleValueExtendedProperties"] = extended
    return out


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
        raise _unknown(sorted(unknown)[0], "contactFolder")
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
        raise _unknown(sorted(unknown)[0], "contactFolder")
    if "displayName" in body:
        name = body["displayName"]
        if not isinstance(name, str) or not name.strip():
            raise bad_request("The displayName of a contact folder must be a non-empty string.", "ErrorInvalidRequest")
        with ctx.store.lock:
            _check_unique(ctx.emu, ctx.user.id, name, coll.id)
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
            predicate = compile_filter(_canonicalise_filter(ctx.req.query["$filter"]), CONTACT_PROPERTIES)
            items = [i for i in items if predicate(_filter_record(i, coll.id), {})]
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


def install(emu: Emulator) -> None:
    r = emu.router
    r.add("GET", "/contactFolders", list_folders)
    r.add("POST", "/contactFolders", post_folder)
    r.add("GET", "/contactFolders/{folder_id}", get_folder)
    r.add("PATCH", "/contactFolders/{folder_id}", patch_folder)
    r.add("DELETE", "/contactFolders/{folder_id}", delete_folder_handler)
    for name in ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()"):
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

