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

from m365_emulator.kernel.emulator import Emulator, GraphContext
from m365_emulator.kernel.graph import (
    unknown_property,
    wrong_type,
    GraphError,
    apply_select,
    bad_request,
    etag,
    etag_matches,
    iso,
    new_folder_id,
    not_found,
    parse_extended_properties,
)
from m365_emulator.kernel.odata_filter import canonicalise_filter, compile_filter
from m365_emulator.kernel.store import Collection, Item

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
                raise wrong_type(name, "Edm.String")
            changes[name] = value
        elif name in STRING_LISTS:
            if value is None:
                value = []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise wrong_type(name, "Collection(Edm.String)")
            changes[name] = list(value)
        elif name in ADDRESSES:
            changes[name] = _address(name, value)
        elif name == "emailAddresses":
            changes[name] = _emails(value)
        elif name == "birthday":
            changes[name] = _birthday(value)
        else:
            raise unknown_property(name, "contact")
    return changes, extended


def _address(name: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise wrong_type(name, "microsoft.graph.physicalAddress")
    address: dict[str, str] = {}
    for key, part in value.items():
        if key.startswith("@odata."):
            continue
        if key not in ADDRESS_FIELDS:
            raise unknown_property(key, "physicalAddress")
        if part is not None and not isinstance(part, str):
            raise wrong_type(key, "Edm.String")
        if part is not None:
            address[key] = part
    return address


def _emails(value: Any) -> list[dict[str, str | None]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise wrong_type("emailAddresses", "Collection(microsoft.graph.emailAddress)")
    emails: list[dict[str, str | None]] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise wrong_type("emailAddresses", "microsoft.graph.emailAddress")
        for key, part in entry.items():
            if key.startswith("@odata."):
                continue
            if key not in ("name", "address"):
                raise unknown_property(key, "emailAddress")
            if part is not None and not isinstance(part, str):
                raise wrong_type(key, "Edm.String")
        emails.append({"name": entry.get("name"), "address": entry.get("address")})
    return emails


def _birthday(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise wrong_type("birthday", "Edm.DateTimeOffset")
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
    return emu.store.default_first(user_id, KIND_FOLDER, ensure_default_folder(emu, user_id))


def create_folder(emu: Emulator, user_id: str, display_name: Any) -> Collection:
    if not isinstance(display_name, str) or not display_name.strip():
        raise bad_request("The displayName of a contact folder must be a non-empty string.", "ErrorInvalidRequest")
    default = ensure_default_folder(emu, user_id)
    with emu.store.lock:
        check_unique(emu, user_id, display_name, None)
        return emu.store.add_collection(user_id, KIND_FOLDER, {"displayName": display_name, "parentFolderId": default},
                                        lambda cid: _resource(user_id, cid))


def check_unique(emu: Emulator, user_id: str, name: str, except_id: str | None) -> None:
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
        predicate = compile_filter(canonicalise_filter(filt["expr"]), ("id", "value"))
        props = [p for p in props if predicate(p, {})]
    return props


def filter_record(item: Item, folder_id: str) -> dict[str, Any]:
    record = contact_json(item, folder_id, False)
    record["singleValueExtendedProperties"] = [{"id": k, "value": v} for k, v in item.extended.items()]
    return record


def render(ctx: GraphContext, item: Item, folder_id: str, select: list[str] | None) -> dict[str, Any]:
    out = apply_select(contact_json(item, folder_id, ctx.immutable), [s for s in select if s != "singleValueExtendedProperties"]
                       if select is not None else None)
    extended = _extended_json(item, ctx.req.query.get("$expand"))
    if extended is not None:
        out["singleValueExtendedProperties"] = extended
    return out
