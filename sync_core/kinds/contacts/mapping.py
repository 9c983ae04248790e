"""The one mapping between a CRM contact, our normalised ContactFields and Outlook's Graph JSON.

Both directions go through `normalise_fields`, so a value read back from either side hashes the same as
the value written: a round trip CRM → Graph JSON → CRM is the identity, and our own writes never look like
changes. Only the Outlook fields listed in OWNED_GRAPH_FIELDS are ours; PATCH bodies carry nothing else, so
what a user keeps in other Outlook fields (home phone, birthday, department...) is never overwritten.
The settings page previews a contact through `preview_contact`, i.e. through exactly this code.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync_core.domain.errors import InvalidRecordError
from sync_core.domain.models import DEFAULT_IMPORT_ACCOUNT, Address, ContactFields, CrmContact, MsContact
from sync_core.domain.text import TEXT_MAX, clean_block, clean_line, fit, fixpoint, graph_item, is_unsafe

# clean_line and clean_block are kind-neutral (domain/text.py); kept importable from here.

# Our CRM id rides on every contact we create, so a create whose outcome was lost can be found again.
CRM_ID_PROPERTY = "String {8a3c5e1f-2b4d-4f6a-9c7e-1d2f3a4b5c6d} Name CrmId"

# Outlook limits, counted in UTF-16 code units as Exchange counts them. Outlook holds three e-mail
# addresses per contact. Notes are capped so one value fits a Table Storage property (64 KiB) even after
# JSON escaping; longer CRM notes are kept intact in the CRM (see `fields_to_crm`).
MAX_EMAILS = 3
EMAIL_MAX = 254
NAME_MAX = 255
PHONE_MAX = 64
POSTAL_CODE_MAX = 40
STREET_MAX = 1024
NOTES_MAX = 8000

OWNED_GRAPH_FIELDS = (
    "givenName", "surname", "displayName", "emailAddresses", "businessPhones", "mobilePhone",
    "jobTitle", "companyName", "businessAddress", "personalNotes",
)


def clean_email(value: str) -> str:
    def step(text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        text = "".join(ch for ch in text if not is_unsafe(ch) and not ch.isspace())
        return fit(unicodedata.normalize("NFC", text.lower()), EMAIL_MAX)

    return fixpoint(step, value)


def clean_emails_all(values: Iterable[str]) -> tuple[str, ...]:
    """Cleaned, de-duplicated addresses in their order, without Outlook's cap (what the CRM may hold)."""
    seen: list[str] = []
    for value in values:
        email = clean_email(value)
        if email and email not in seen:
            seen.append(email)
    return tuple(seen)


def clean_emails(values: Iterable[str]) -> tuple[str, ...]:
    return clean_emails_all(values)[:MAX_EMAILS]


def normalise_address(address: Address) -> Address:
    return Address(
        street=clean_block(address.street, STREET_MAX),
        city=clean_line(address.city, TEXT_MAX),
        state=clean_line(address.state, TEXT_MAX),
        postal_code=clean_line(address.postal_code, POSTAL_CODE_MAX),
        country=clean_line(address.country, TEXT_MAX),
    )


def normalise_fields(fields: ContactFields) -> ContactFields:
    """The one normal form; idempotent. Both sides are compared and hashed only in this form."""
    return ContactFields(
        first_name=clean_line(fields.first_name, NAME_MAX),
        last_name=clean_line(fields.last_name, NAME_MAX),
        emails=clean_emails(fields.emails),
        business_phone=clean_line(fields.business_phone, PHONE_MAX),
        mobile_phone=clean_line(fields.mobile_phone, PHONE_MAX),
        job_title=clean_line(fields.job_title, TEXT_MAX),
        company=clean_line(fields.company, TEXT_MAX),
        address=normalise_address(fields.address),
        notes=clean_block(fields.notes, NOTES_MAX),
    )


def company_for_account(account_name: str) -> str:
    """The account that stands for "no company" shows as a blank company in Outlook (and blank maps back to it)."""
    name = clean_line(account_name)
    return "" if name.casefold() == DEFAULT_IMPORT_ACCOUNT.casefold() else name

# --- CRM ⇄ fields -------------------------------------------------------------------------------------

def crm_to_fields(contact: CrmContact, account_name: str) -> ContactFields:
    return normalise_fields(
        ContactFields(
            first_name=contact.first_name,
            last_name=contact.last_name,
            emails=contact.emails,
            business_phone=contact.business_phone,
            mobile_phone=contact.mobile_phone,
            job_title=contact.job_title,
            company=company_for_account(account_name),
            address=contact.address,
            notes=contact.notes,
        )
    )


def fields_to_crm(
    fields: ContactFields,
    base: CrmContact | None,
    account_id: str,
    *,
    tenant_id: str = "",
    contact_id: str = "",
) -> CrmContact:
    """The CRM record holding `fields`, built on `base` (its id, version and raw values).

    Where the base's raw value already normalises to the wanted value it is kept as is, so a write changes
    only what really changed (CRM formatting, a fourth e-mail address or notes beyond Outlook's cap survive).
    Without a base, `tenant_id` and `contact_id` name the new record.
    """
    fields = normalise_fields(fields)
    if base is None:
        if not tenant_id:
            raise ValueError("fields_to_crm needs tenant_id when there is no base record")
        base = CrmContact(id=contact_id, tenant_id=tenant_id, account_id=account_id)

    def keep(raw: str, wanted: str, clean: Callable[[str], str]) -> str:
        return raw if clean(raw) == wanted else wanted

    def line(cap: int) -> Callable[[str], str]:
        return lambda raw: clean_line(raw, cap)

    emails: tuple[str, ...]
    if clean_emails(base.emails) == fields.emails:
        emails = base.emails
    else:
        beyond = [e for e in clean_emails_all(base.emails)[MAX_EMAILS:] if e not in fields.emails]
        emails = fields.emails + tuple(beyond)
    notes = keep(base.notes, fields.notes, lambda raw: clean_block(raw, NOTES_MAX))
    address = Address(
        street=keep(base.address.street, fields.address.street, lambda raw: clean_block(raw, STREET_MAX)),
        city=keep(base.address.city, fields.address.city, line(TEXT_MAX)),
        state=keep(base.address.state, fields.address.state, line(TEXT_MAX)),
        postal_code=keep(base.address.postal_code, fields.address.postal_code, line(POSTAL_CODE_MAX)),
        country=keep(base.address.country, fields.address.country, line(TEXT_MAX)),
    )
    return base.model_copy(
        update={
            "account_id": account_id,
            "first_name": keep(base.first_name, fields.first_name, line(NAME_MAX)),
            "last_name": keep(base.last_name, fields.last_name, line(NAME_MAX)),
            "emails": emails,
            "business_phone": keep(base.business_phone, fields.business_phone, line(PHONE_MAX)),
            "mobile_phone": keep(base.mobile_phone, fields.mobile_phone, line(PHONE_MAX)),
            "job_title": keep(base.job_title, fields.job_title, line(TEXT_MAX)),
            "address": address,
            "notes": notes,
        }
    )

# --- fields → Graph JSON ------------------------------------------------------------------------------

def display_name(fields: ContactFields) -> str:
    return clean_line(f"{fields.first_name} {fields.last_name}", NAME_MAX)


def fields_to_graph(fields: ContactFields, crm_id: str | None) -> dict[str, Any]:
    """The Graph contact body for a POST (with `crm_id`: tagged with our id) or a PATCH (without).

    Empty values are sent as null / [] so that clearing a field in the CRM clears it in Outlook.
    """
    fields = normalise_fields(fields)
    name = display_name(fields)
    body: dict[str, Any] = {
        "givenName": fields.first_name or None,
        "surname": fields.last_name or None,
        "displayName": name or None,
        "emailAddresses": [{"address": email, "name": name or email} for email in fields.emails],
        "businessPhones": [fields.business_phone] if fields.business_phone else [],
        "mobilePhone": fields.mobile_phone or None,
        "jobTitle": fields.job_title or None,
        "companyName": fields.company or None,
        "businessAddress": {
            "street": fields.address.street or None,
            "city": fields.address.city or None,
            "state": fields.address.state or None,
            "postalCode": fields.address.postal_code or None,
            "countryOrRegion": fields.address.country or None,
        },
        "personalNotes": fields.notes or None,
    }
    if crm_id is not None:
        body["singleValueExtendedProperties"] = [{"id": CRM_ID_PROPERTY, "value": crm_id}]
    return body

# --- Graph JSON → MsContact ---------------------------------------------------------------------------

def _text(item: Mapping[str, Any], key: str) -> str:
    value = item.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise InvalidRecordError(f"{key} is not text")


def _list(item: Mapping[str, Any], key: str) -> list[Any]:
    value = item.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise InvalidRecordError(f"{key} is not a list")


def _emails(item: Mapping[str, Any]) -> list[str]:
    emails: list[str] = []
    for entry in _list(item, "emailAddresses"):
        if isinstance(entry, str):
            emails.append(entry)
        elif isinstance(entry, Mapping):
            emails.append(_text(entry, "address"))
        elif entry is not None:
            raise InvalidRecordError("emailAddresses holds an entry that is neither text nor an object")
    return emails


def _address(item: Mapping[str, Any]) -> Address:
    raw = item.get("businessAddress")
    if raw is None:
        return Address()
    if not isinstance(raw, Mapping):
        raise InvalidRecordError("businessAddress is not an object")
    return Address(
        street=_text(raw, "street"),
        city=_text(raw, "city"),
        state=_text(raw, "state"),
        postal_code=_text(raw, "postalCode"),
        country=_text(raw, "countryOrRegion"),
    )


def _first_phone(item: Mapping[str, Any]) -> str:
    for phone in _list(item, "businessPhones"):
        if phone is None:
            continue
        if not isinstance(phone, str):
            raise InvalidRecordError("businessPhones holds an entry that is not text")
        if phone.strip():
            return phone
    return ""


def graph_to_contact(item: object) -> MsContact:
    """Parse one Graph contact (any documented shape: nulls, missing keys, placeholders).

    Raises InvalidRecordError with a reason (never a value from the record) when the item is unusable.
    """
    item, ms_id = graph_item(item, "contact")
    change_key = item.get("changeKey")
    if change_key is not None and not isinstance(change_key, str):
        raise InvalidRecordError("changeKey is not text")
    parent = item.get("parentFolderId")
    fields = normalise_fields(
        ContactFields(
            first_name=_text(item, "givenName"),
            last_name=_text(item, "surname"),
            emails=tuple(_emails(item)),
            business_phone=_first_phone(item),
            mobile_phone=_text(item, "mobilePhone"),
            job_title=_text(item, "jobTitle"),
            company=_text(item, "companyName"),
            address=_address(item),
            notes=_text(item, "personalNotes"),
        )
    )
    fields = _names_from_display_name(fields, _text(item, "displayName"))
    return MsContact(
        id=ms_id,
        version=change_key or "",
        fields=fields,
        parent_folder_id=parent if isinstance(parent, str) else None,
    )


def _names_from_display_name(fields: ContactFields, raw_display: str) -> ContactFields:
    """A contact that has only a display name (e.g. "Pavel Bansky") gets first/last name from it.

    A display name Outlook derived from an e-mail address or the company is not a person's name.
    """
    if fields.first_name or fields.last_name:
        return fields
    shown = clean_line(raw_display, NAME_MAX)
    if not shown or shown.lower() in fields.emails or shown.casefold() == fields.company.casefold():
        return fields
    first, _, last = shown.rpartition(" ")
    return normalise_fields(fields.model_copy(update={"first_name": first, "last_name": last}))

# --- preview for the settings page --------------------------------------------------------------------

@dataclass(frozen=True)
class ContactPreview:
    """How one CRM contact will look in Outlook: the normalised fields, the Graph body and display rows."""

    fields: ContactFields
    graph_body: dict[str, Any]
    rows: tuple[tuple[str, str], ...]
    content_hash: str


def preview_contact(contact: CrmContact, account_name: str) -> ContactPreview:
    fields = crm_to_fields(contact, account_name)
    address = fields.address
    rows = (
        ("First name", fields.first_name),
        ("Last name", fields.last_name),
        ("E-mail", ", ".join(fields.emails)),
        ("Business phone", fields.business_phone),
        ("Mobile phone", fields.mobile_phone),
        ("Job title", fields.job_title),
        ("Company", fields.company),
        ("Business address", ", ".join(
            part for part in (address.street.replace("\n", ", "), address.city, address.state,
                              address.postal_code, address.country) if part)),
        ("Notes", fields.notes),
    )
    return ContactPreview(fields, fields_to_graph(fields, contact.id), rows, fields.content_hash())
