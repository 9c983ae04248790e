"""The one contact mapping: round trips, normalisation, Outlook's limits, every documented Graph shape."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync_core.kinds.contacts import mapping
from sync_core.domain.errors import InvalidRecordError
from sync_core.kinds.contacts.mapping import (
    CRM_ID_PROPERTY,
    OWNED_GRAPH_FIELDS,
    crm_to_fields,
    fields_to_crm,
    fields_to_graph,
    graph_to_contact,
    normalise_fields,
    preview_contact,
)
from sync_core.domain.models import DEFAULT_IMPORT_ACCOUNT, Address, ContactFields, CrmContact
from tests.graph_docs import GRAPH_DOCS

FIXTURES = GRAPH_DOCS
CONTACT_FIXTURES = sorted([*FIXTURES.glob("contact-*.json"), FIXTURES / "contact.resource.json",
                           *FIXTURES.glob("user-*contacts*.json")])

# Text as users and systems produce it: any unicode, control characters, lone surrogates, odd spaces.
odd_chars = st.sampled_from(["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u00a0", "\u2028", "\ud800", "\udfff",
                             "\ufeff", "\ufffe", "\r\n", "\t", "e\u0301", "\U0001F600", "\u200d", "İ", "ß"])
text = st.lists(st.one_of(st.text(max_size=12), odd_chars), max_size=8).map("".join)
huge = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "\U0001F600", " ", "\n"]), st.integers(200, 9000))
any_text = st.one_of(text, huge)


@st.composite
def crm_contacts(draw: st.DrawFn) -> CrmContact:
    return CrmContact(
        id=draw(st.text("abcdef0123456789-", min_size=1, max_size=20)), tenant_id="t", account_id="a1",
        first_name=draw(any_text), last_name=draw(text), emails=tuple(draw(st.lists(any_text, max_size=5))),
        business_phone=draw(text), mobile_phone=draw(text), job_title=draw(any_text),
        address=Address(street=draw(any_text), city=draw(text), state=draw(text), postal_code=draw(text),
                        country=draw(text)),
        notes=draw(any_text), version="v1",
    )


def utf16(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def as_item(body: dict[str, Any], ms_id: str = "AAMk1", change_key: str = "ck1") -> dict[str, Any]:
    """What Graph hands back for a body we sent: the same JSON plus id and changeKey."""
    return {**json.loads(json.dumps(body)), "id": ms_id, "changeKey": change_key}


RELAXED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RELAXED
@given(crm_contacts(), text)
def test_crm_to_graph_json_to_crm_is_the_identity(contact: CrmContact, account_name: str) -> None:
    fields = crm_to_fields(contact, account_name)
    body = fields_to_graph(fields, contact.id)
    json.dumps(body, ensure_ascii=False).encode("utf-8")  # strictly valid JSON text: no lone surrogates
    parsed = graph_to_contact(as_item(body))
    assert parsed.fields == fields
    assert parsed.fields.content_hash() == fields.content_hash()
    # Written back onto the record it came from, nothing changes (raw CRM values are kept).
    assert fields_to_crm(parsed.fields, contact, contact.account_id) == contact
    # A new CRM record built from Outlook maps to the same fields again.
    fresh = fields_to_crm(parsed.fields, None, "a1", tenant_id="t", contact_id="new")
    assert crm_to_fields(fresh, account_name) == fields


@RELAXED
@given(crm_contacts())
def test_a_normalised_contact_survives_crm_graph_crm_unchanged(contact: CrmContact) -> None:
    clean = fields_to_crm(crm_to_fields(contact, "Acme"), None, "a1", tenant_id="t", contact_id=contact.id)
    again = graph_to_contact(as_item(fields_to_graph(crm_to_fields(clean, "Acme"), clean.id)))
    back = fields_to_crm(again.fields, None, "a1", tenant_id="t", contact_id=contact.id)
    assert back == clean


@RELAXED
@given(st.builds(ContactFields, first_name=any_text, last_name=any_text, emails=st.lists(any_text, max_size=6).map(tuple),
                 business_phone=any_text, mobile_phone=any_text, job_title=any_text, company=any_text,
                 address=st.builds(Address, street=any_text, city=any_text, state=any_text, postal_code=any_text,
                                   country=any_text),
                 notes=any_text))
def test_normal_form_is_idempotent_clean_and_within_outlook_limits(raw: ContactFields) -> None:
    fields = normalise_fields(raw)
    assert normalise_fields(fields) == fields
    singles = [fields.first_name, fields.last_name, fields.business_phone, fields.mobile_phone, fields.job_title,
               fields.company, fields.address.city, fields.address.state, fields.address.postal_code,
               fields.address.country, *fields.emails]
    for value in singles:
        assert value == value.strip()
        assert "  " not in value and "\n" not in value
        assert not any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF or ch in "\x7f\x85\ufffe" for ch in value)
    for value in (fields.notes, fields.address.street):
        assert not any((ord(ch) < 32 and ch not in "\n\t") or 0xD800 <= ord(ch) <= 0xDFFF for ch in value)
        assert "\r" not in value
    assert utf16(fields.first_name) <= mapping.NAME_MAX and utf16(fields.last_name) <= mapping.NAME_MAX
    assert utf16(fields.business_phone) <= mapping.PHONE_MAX and utf16(fields.job_title) <= mapping.TEXT_MAX
    assert utf16(fields.notes) <= mapping.NOTES_MAX and utf16(fields.address.street) <= mapping.STREET_MAX
    assert len(fields.emails) <= mapping.MAX_EMAILS and len(set(fields.emails)) == len(fields.emails)
    assert all(e == e.lower() and utf16(e) <= mapping.EMAIL_MAX and e for e in fields.emails)


def test_normalisation_examples() -> None:
    fields = normalise_fields(ContactFields(
        first_name="  Ada\u00a0\x00 ", last_name="Love\tlace\x1b", emails=(" Ada@Example.COM", "ada@example.com", "",
                                                                       "B@x.org", "c@x.org", "d@x.org"),
        notes="line one\r\nline\x07 two  \r\n\r\n", company="Cafe\u0301", address=Address(street="1 Way\r\nSuite 2\u2028")))
    assert (fields.first_name, fields.last_name) == ("Ada", "Love lace")
    assert fields.emails == ("ada@example.com", "b@x.org", "c@x.org")
    assert fields.notes == "line one\nline two" and fields.address.street == "1 Way\nSuite 2"
    assert fields.company == "Caf\u00e9"
    assert utf16(normalise_fields(ContactFields(first_name="\U0001F600" * 200)).first_name) == 254  # no half pair


def test_fields_to_crm_keeps_crm_values_outlook_cannot_hold() -> None:
    contact = CrmContact(id="c1", tenant_id="t", account_id="a1", first_name="ADA ", notes="n" * 9000,
                         emails=("a@x.org", "b@x.org", "c@x.org", "d@x.org"), version="v7")
    fields = crm_to_fields(contact, "Engines")
    assert fields.emails == ("a@x.org", "b@x.org", "c@x.org") and len(fields.notes) == mapping.NOTES_MAX
    assert fields_to_crm(fields, contact, "a1") == contact  # untouched: raw name, 4th address, long notes
    edited = fields.model_copy(update={"emails": ("a@x.org", "z@x.org"), "job_title": "Countess"})
    written = fields_to_crm(edited, contact, "a2")
    assert written.emails == ("a@x.org", "z@x.org", "d@x.org") and written.job_title == "Countess"
    assert written.account_id == "a2" and written.version == "v7" and written.first_name == "ADA "


def test_graph_body_carries_only_our_fields_and_our_id_on_create() -> None:
    fields = ContactFields(first_name="Ada", last_name="Lovelace", emails=("ada@x.org",), business_phone="+44 1",
                           company="Engines", address=Address(city="London"))
    patch = fields_to_graph(fields, None)
    assert set(patch) == set(OWNED_GRAPH_FIELDS)
    assert patch["displayName"] == "Ada Lovelace" and patch["businessPhones"] == ["+44 1"]
    assert patch["emailAddresses"] == [{"address": "ada@x.org", "name": "Ada Lovelace"}]
    assert patch["mobilePhone"] is None and patch["businessAddress"]["city"] == "London"
    post = fields_to_graph(fields, "crm-42")
    assert post["singleValueExtendedProperties"] == [{"id": CRM_ID_PROPERTY, "value": "crm-42"}]
    assert CRM_ID_PROPERTY.startswith("String {") and CRM_ID_PROPERTY.endswith("} Name CrmId")


def test_clearing_a_field_in_the_crm_clears_it_in_outlook() -> None:
    item = as_item(fields_to_graph(ContactFields(first_name="Ada", mobile_phone="+1", emails=("a@x.org",)), "c1"))
    cleared = {**item, **fields_to_graph(ContactFields(first_name="Ada"), None)}
    assert graph_to_contact(cleared).fields == ContactFields(first_name="Ada")


def test_the_no_company_account_shows_as_a_blank_company() -> None:
    contact = CrmContact(id="c1", tenant_id="t", account_id="a1", first_name="Ada")
    assert crm_to_fields(contact, DEFAULT_IMPORT_ACCOUNT).company == ""
    assert crm_to_fields(contact, " from office 365 ").company == ""
    assert crm_to_fields(contact, "Engines Ltd").company == "Engines Ltd"


# --- Graph shapes -------------------------------------------------------------------------------

def fixture_items(path: Path) -> list[Any]:
    payload = json.loads(path.read_text())
    return payload["value"] if isinstance(payload, dict) and "value" in payload else [payload]


@pytest.mark.parametrize("path", CONTACT_FIXTURES, ids=lambda p: p.name)
def test_every_documented_contact_payload_parses_or_is_refused_with_a_reason(path: Path) -> None:
    for item in fixture_items(path):
        try:
            contact = graph_to_contact(item)
        except InvalidRecordError as exc:
            assert "id" not in item and str(exc) == "item has no id"
            contact = graph_to_contact({**item, "id": "given-id"})
        assert contact.id
        assert normalise_fields(contact.fields) == contact.fields


def test_the_documented_contact_maps_field_by_field() -> None:
    contact = graph_to_contact(json.loads((FIXTURES / "contact-get.response.json").read_text()))
    assert contact.id == "AAMkAGI2THk0AAA=" and contact.version == "EQAAABYAAACd9nJ/tVysQos2hTfspaWRAAADTIa4"
    assert contact.parent_folder_id == "AAMkAGI2AAEOAAA="
    assert contact.fields == ContactFields(
        first_name="Garth", last_name="Fort", emails=("garth@a830edad9050849nda1.onmicrosoft.com",),
        business_phone="+1 918 555 0101", job_title="Web Marketing Manager", company="Contoso, Inc.",
        address=Address(street="10 Contoso Way", city="Redmond", state="WA", postal_code="98075", country="USA"))


def test_a_contact_with_only_a_display_name_gets_its_names_from_it() -> None:
    posted = json.loads((FIXTURES / "user-post-contacts.response.json").read_text())
    fields = graph_to_contact(posted).fields
    assert (fields.first_name, fields.last_name) == ("Pavel", "Bansky")
    assert graph_to_contact({"id": "x", "displayName": "Cher"}).fields.last_name == "Cher"
    # A display name Outlook derived from the address or the company is not a name.
    derived = graph_to_contact({"id": "x", "displayName": "A@X.org", "emailAddresses": [{"address": "a@x.org"}],
                                "companyName": "Engines"})
    assert (derived.fields.first_name, derived.fields.last_name) == ("", "")
    assert graph_to_contact({"id": "x", "displayName": "engines", "companyName": "Engines"}).fields.last_name == ""


def test_tolerated_shapes() -> None:
    item = {"id": "x", "changeKey": None, "givenName": None, "emailAddresses": [{"@odata.type": "x"}, "B@x.org", None,
                                                                               {"address": None, "name": "n"}],
            "businessPhones": [None, "  ", "+1 2"], "mobilePhone": 5551234, "businessAddress": {},
            "homeAddress": "ignored", "personalNotes": None}
    contact = graph_to_contact(item)
    assert contact.version == "" and contact.fields.emails == ("b@x.org",)
    assert contact.fields.business_phone == "+1 2" and contact.fields.mobile_phone == "5551234"
    assert graph_to_contact({"id": "x", "businessPhones": "+1 3"}).fields.business_phone == "+1 3"


@pytest.mark.parametrize(("item", "reason"), [
    (["not", "an", "object"], "item is not a JSON object"),
    ({"id": ""}, "item has no id"),
    ({"id": 42}, "item has no id"),
    ({"id": "x", "@removed": {"reason": "deleted"}}, "item is a removal marker, not a contact"),
    ({"id": "x", "givenName": {"a": 1}}, "givenName is not text"),
    ({"id": "x", "emailAddresses": {"address": "a@x.org"}}, "emailAddresses is not a list"),
    ({"id": "x", "emailAddresses": [42]}, "emailAddresses holds an entry that is neither text nor an object"),
    ({"id": "x", "businessAddress": "1 Way"}, "businessAddress is not an object"),
    ({"id": "x", "businessPhones": [["+1"]]}, "businessPhones holds an entry that is not text"),
    ({"id": "x", "changeKey": 7}, "changeKey is not text"),
])
def test_unusable_items_are_refused_with_a_reason_naming_no_value(item: Any, reason: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        graph_to_contact(item)
    assert str(info.value) == reason


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["givenName", "surname", "displayName", "emailAddresses", "businessPhones",
                                        "mobilePhone", "jobTitle", "companyName", "businessAddress", "personalNotes",
                                        "changeKey", "parentFolderId"]), json_values))
def test_any_json_either_parses_or_is_refused_as_invalid(shape: dict[str, Any]) -> None:
    try:
        contact = graph_to_contact({"id": "x", **shape})
    except InvalidRecordError:
        return
    assert normalise_fields(contact.fields) == contact.fields


def test_preview_goes_through_the_sync_mapping() -> None:
    contact = CrmContact(id="c1", tenant_id="t", account_id="a1", first_name=" Ada ", last_name="Lovelace",
                         emails=("ADA@x.org",), address=Address(street="1 Way\nFlat 2", city="London"))
    preview = preview_contact(contact, "Engines")
    assert preview.fields == crm_to_fields(contact, "Engines")
    assert preview.graph_body == fields_to_graph(preview.fields, "c1")
    assert preview.content_hash == preview.fields.content_hash()
    rows = dict(preview.rows)
    assert rows["E-mail"] == "ada@x.org" and rows["Company"] == "Engines"
    assert rows["Business address"] == "1 Way, Flat 2, London"
