"""Contact folders and contacts over real HTTP: the unmodified msgraph-sdk where it has the call, raw httpx for
status codes and headers, and every contact/folder payload Microsoft publishes."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest

from m365_emulator.server import ControlClient
from tests.emulator.conftest import IMMUTABLE, GraphHttp, new_folder
from tests.graph_docs import GRAPH_DOCS

FIXTURES = GRAPH_DOCS
CRM_PROP = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name CrmId"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_me_returns_the_token_owner(graph: GraphHttp, emulator_user: dict[str, Any]) -> None:
    me = graph.ok("GET", "/me")
    assert me["id"] == emulator_user["id"]
    assert me["userPrincipalName"] == emulator_user["userPrincipalName"]
    by_upn = graph.ok("GET", f"/users/{emulator_user['userPrincipalName']}")
    assert by_upn["id"] == emulator_user["id"]


def test_missing_invalid_and_foreign_tokens(graph: GraphHttp, control: ControlClient) -> None:
    missing = graph.http.get(graph.base + "/me/contacts")
    assert missing.status_code == 401
    body = missing.json()["error"]
    assert body["code"] == "InvalidAuthenticationToken"
    assert body["innerError"]["request-id"] == missing.headers["request-id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", body["innerError"]["date"])
    assert "WWW-Authenticate" in missing.headers
    assert graph.get("/me", token="not-a-token").status_code == 401
    other = control.create_user()
    denied = graph.get(f"/users/{other['id']}/contactFolders")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "ErrorAccessDenied"
    unknown = graph.get("/users/nobody@contoso.test/contacts")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "ErrorInvalidUser"


def test_sdk_folders_create_list_filter_get_delete(make_sdk: Callable[[str], Any], aio: Any,
                                                  emulator_user: dict[str, Any]) -> None:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.models.contact_folder import ContactFolder
    from msgraph.generated.users.item.contact_folders.contact_folders_request_builder import ContactFoldersRequestBuilder

    client = make_sdk(emulator_user["token"])

    async def scenario() -> None:
        created = await client.me.contact_folders.post(ContactFolder(display_name="CRM contacts"))
        assert created.id and created.display_name == "CRM contacts"
        await client.me.contact_folders.post(ContactFolder(display_name="Other"))
        listed = await client.me.contact_folders.get()
        assert {f.display_name for f in listed.value} == {"Contacts", "CRM contacts", "Other"}
        default = next(f for f in listed.value if f.display_name == "Contacts")
        assert created.parent_folder_id == default.id
        query = ContactFoldersRequestBuilder.ContactFoldersRequestBuilderGetQueryParameters(
            filter="displayName eq 'CRM contacts'")
        found = await client.me.contact_folders.get(RequestConfiguration(query_parameters=query))
        assert [f.id for f in found.value] == [created.id]
        fetched = await client.me.contact_folders.by_contact_folder_id(created.id).get()
        assert fetched.display_name == "CRM contacts"
        await client.me.contact_folders.by_contact_folder_id(created.id).delete()
        after = await client.me.contact_folders.get()
        assert created.id not in {f.id for f in after.value}

    aio(scenario())


def test_folder_rules(graph: GraphHttp) -> None:
    new_folder(graph, "Dup")
    dup = graph.post("/me/contactFolders", {"displayName": "dup"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "ErrorFolderExists"
    default = graph.ok("GET", "/me/contactFolders", params={"$filter": "displayName eq 'Contacts'"})["value"][0]
    refused = graph.delete(f"/me/contactFolders/{default['id']}")
    assert refused.status_code == 403
    assert graph.get("/me/contactFolders/AAMkADnope").status_code == 404


def test_deleting_a_folder_deletes_its_contacts(graph: GraphHttp) -> None:
    fid = new_folder(graph, "Doomed")
    cid = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "Gone"}, status=201)["id"]
    assert graph.delete(f"/me/contactFolders/{fid}").status_code == 204
    assert graph.get(f"/me/contacts/{cid}").status_code == 404
    assert graph.get(f"/me/contactFolders/{fid}/contacts").status_code == 404


def test_sdk_contact_crud(make_sdk: Callable[[str], Any], aio: Any, graph: GraphHttp,
                          emulator_user: dict[str, Any]) -> None:
    from msgraph.generated.models.contact import Contact
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.physical_address import PhysicalAddress

    client = make_sdk(emulator_user["token"])
    fid = new_folder(graph)

    async def scenario() -> None:
        folder = client.me.contact_folders.by_contact_folder_id(fid)
        made = await folder.contacts.post(Contact(
            given_name="Garth", surname="Fort", company_name="Contoso, Inc.", job_title="Web Marketing Manager",
            email_addresses=[EmailAddress(name="Garth", address="garth@contoso.test")],
            business_phones=["+1 918 555 0101"], categories=["CRM"],
            business_address=PhysicalAddress(street="10 Contoso Way", city="Redmond", postal_code="98075")))
        assert made.id and made.change_key and made.parent_folder_id == fid
        assert made.display_name == "Garth Fort"
        assert made.created_date_time is not None and made.created_date_time.utcoffset().total_seconds() == 0
        got = await folder.contacts.by_contact_id(made.id).get()
        assert got.email_addresses[0].address == "garth@contoso.test"
        assert got.business_address.city == "Redmond"
        patched = await folder.contacts.by_contact_id(made.id).patch(Contact(mobile_phone="+1 555 0100"))
        assert patched.mobile_phone == "+1 555 0100"
        assert patched.company_name == "Contoso, Inc."  # PATCH merges
        assert patched.change_key != made.change_key
        via_me = await client.me.contacts.by_contact_id(made.id).get()
        assert via_me.mobile_phone == "+1 555 0100"
        await client.me.contacts.by_contact_id(made.id).delete()
        listed = await folder.contacts.get()
        assert listed.value == []

    aio(scenario())


def test_me_contacts_is_the_default_folder(graph: GraphHttp) -> None:
    made = graph.ok("POST", "/me/contacts", {"givenName": "Default"}, status=201)
    default = graph.ok("GET", "/me/contactFolders", params={"$filter": "displayName eq 'Contacts'"})["value"][0]
    assert made["parentFolderId"] == default["id"]
    fid = new_folder(graph)
    elsewhere = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "Elsewhere"}, status=201)
    assert [c["id"] for c in graph.ok("GET", "/me/contacts")["value"]] == [made["id"]]
    assert graph.ok("GET", f"/me/contacts/{elsewhere['id']}")["givenName"] == "Elsewhere"
    assert graph.get(f"/me/contactFolders/{default['id']}/contacts/{elsewhere['id']}").status_code == 404


def test_etags_change_keys_and_if_match(graph: GraphHttp) -> None:
    made = graph.ok("POST", "/me/contacts", {"givenName": "Etag"}, status=201)
    assert made["@odata.etag"] == f'W/"{made["changeKey"]}"'
    path = f"/me/contacts/{made['id']}"
    updated = graph.ok("PATCH", path, {"surname": "One"}, headers={"If-Match": made["@odata.etag"]})
    assert updated["changeKey"] != made["changeKey"]
    assert updated["lastModifiedDateTime"] >= made["lastModifiedDateTime"]
    stale = graph.patch(path, {"surname": "Two"}, headers={"If-Match": made["@odata.etag"]})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.delete(path, headers={"If-Match": made["@odata.etag"]}).status_code == 412
    assert graph.ok("GET", path)["surname"] == "One"
    assert graph.delete(path, headers={"If-Match": updated["@odata.etag"]}).status_code == 204


def test_select_top_and_next_link_paging(graph: GraphHttp) -> None:
    fid = new_folder(graph)
    for n in range(7):
        graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": f"P{n}", "surname": "Page"}, status=201)
    page = graph.ok("GET", f"/me/contactFolders/{fid}/contacts", params={"$select": "givenName", "$top": "3"})
    seen = []
    while True:
        for contact in page["value"]:
            assert set(contact) == {"@odata.etag", "id", "givenName"}
            seen.append(contact["givenName"])
        if "@odata.nextLink" not in page:
            break
        page = graph.ok("GET", page["@odata.nextLink"])
    assert seen == [f"P{n}" for n in range(7)]
    bad = graph.get(f"/me/contactFolders/{fid}/contacts", params={"$select": "nonsense"})
    assert bad.status_code == 400


def test_extended_property_is_stored_filterable_and_expandable_only_on_request(graph: GraphHttp) -> None:
    fid = new_folder(graph)
    tagged = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {
        "givenName": "Tagged", "singleValueExtendedProperties": [{"id": CRM_PROP, "value": "crm-42"}]}, status=201)
    graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {
        "givenName": "Other", "singleValueExtendedProperties": [{"id": CRM_PROP, "value": "crm-7"}]}, status=201)
    assert "singleValueExtendedProperties" not in tagged
    assert "singleValueExtendedProperties" not in graph.ok("GET", f"/me/contacts/{tagged['id']}")
    # Property ids are matched as Exchange matches them: case-insensitively.
    flt = f"singleValueExtendedProperties/Any(ep: ep/id eq '{CRM_PROP.upper().replace('NAME CRMID', 'Name CrmId')}' and ep/value eq 'crm-42')"
    found = graph.ok("GET", f"/me/contactFolders/{fid}/contacts", params={"$filter": flt})["value"]
    assert [c["id"] for c in found] == [tagged["id"]]
    expand = f"singleValueExtendedProperties($filter=id eq '{CRM_PROP}')"
    expanded = graph.ok("GET", f"/me/contacts/{tagged['id']}", params={"$expand": expand})
    assert expanded["singleValueExtendedProperties"] == [{"id": CRM_PROP, "value": "crm-42"}]
    graph.ok("PATCH", f"/me/contacts/{tagged['id']}",
             {"singleValueExtendedProperties": [{"id": CRM_PROP, "value": "crm-43"}]})
    again = graph.ok("GET", f"/me/contactFolders/{fid}/contacts", params={"$filter": flt.replace("42", "43")})
    assert [c["id"] for c in again["value"]] == [tagged["id"]]
    assert graph.get(f"/me/contactFolders/{fid}/contacts", params={"$filter": "givenName eq"}).status_code == 400


def test_unknown_properties_and_bad_json_are_refused(graph: GraphHttp) -> None:
    unknown = graph.post("/me/contacts", {"givenName": "X", "favouriteColour": "blue"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "RequestBodyRead"
    wrong = graph.post("/me/contacts", {"businessPhones": "not a list"})
    assert wrong.status_code == 400
    raw = graph.http.post(graph.base + "/me/contacts", content=b"{nope",
                          headers={"Authorization": f"Bearer {graph.token}", "Content-Type": "application/json"})
    assert raw.status_code == 400


def test_immutable_ids_survive_a_move_regular_ids_do_not(graph: GraphHttp, control: ControlClient,
                                                         emulator_user: dict[str, Any]) -> None:
    source, dest = new_folder(graph, "Source"), new_folder(graph, "Destination")
    regular = graph.ok("POST", f"/me/contactFolders/{source}/contacts", {"givenName": "Mover"}, status=201)
    immutable = graph.ok("GET", f"/me/contacts/{regular['id']}", headers={"Prefer": IMMUTABLE})
    assert immutable["id"] != regular["id"]
    moved = control.move_contact(emulator_user["id"], regular["id"], dest)
    assert moved["parentFolderId"] == dest
    assert moved["id"] != regular["id"]
    assert graph.get(f"/me/contacts/{regular['id']}").status_code == 404  # the old regular id is gone
    assert graph.ok("GET", f"/me/contacts/{moved['id']}")["givenName"] == "Mover"
    after = graph.ok("GET", f"/me/contacts/{immutable['id']}", headers={"Prefer": IMMUTABLE})
    assert after["id"] == immutable["id"] and after["parentFolderId"] == dest
    listed = graph.ok("GET", f"/me/contactFolders/{dest}/contacts", headers={"Prefer": IMMUTABLE})["value"]
    assert [c["id"] for c in listed] == [immutable["id"]]


# ------------------------------------------------------------------ Microsoft's published payloads

def _same_shape(expected: Any, actual: Any, where: str) -> None:
    """Every property of Microsoft's response is in ours, recursively for objects (values differ)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: missing property {key!r}"
            _same_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list) and expected and isinstance(expected[0], dict):
        assert isinstance(actual, list) and actual, f"{where}: expected a non-empty collection"
        _same_shape(expected[0], actual[0], f"{where}[0]")


def full_example() -> dict[str, Any]:
    """Microsoft's contact-get example without its read-only properties: a create body with every field."""
    return {k: v for k, v in load("contact-get.response.json").items()
            if k not in ("id", "createdDateTime", "lastModifiedDateTime", "changeKey", "parentFolderId")}


CALLS: dict[str, tuple[str, str, str | None]] = {
    # request fixture → (method, route, response fixture); {folder} / {contact} are filled in
    "user-post-contactfolders.request.json": ("POST", "/me/contactFolders", "user-post-contactfolders.response.json"),
    "contactfolder-post-contacts.request.json": ("POST", "/me/contactFolders/{folder}/contacts",
                                                 "contactfolder-post-contacts.response.json"),
    "user-post-contacts.request.json": ("POST", "/me/contacts", "user-post-contacts.response.json"),
    "contact-update.request.json": ("PATCH", "/me/contacts/{contact}", "contact-update.response.json"),
}


@pytest.mark.parametrize("request_file", sorted(p.name for p in FIXTURES.glob("*.request.json")
                                                 if re.match(r"(user-post-contact|contactfolder|contact-)", p.name)))
def test_every_published_contact_payload_is_accepted(request_file: str, graph: GraphHttp) -> None:
    assert request_file in CALLS, f"new contact fixture {request_file}: add its route to CALLS"
    method, route, response_file = CALLS[request_file]
    folder = new_folder(graph, "Fixture folder")
    # The contact to update is Microsoft's full example contact, written back (so that is accepted too).
    contact = graph.ok("POST", f"/me/contactFolders/{folder}/contacts", full_example(), status=201)["id"]
    status = 201 if method == "POST" else 200
    body = graph.ok(method, route.format(folder=folder, contact=contact), load(request_file), status=status)
    if response_file:
        _same_shape(load(response_file), body, response_file)
    for name, value in load(request_file).items():
        if name not in ("parentFolderId",) and name in body and name != "birthday":
            assert body[name] == value or name.endswith("Address"), f"{name}: {body[name]!r} != {value!r}"


@pytest.mark.parametrize("response_file", ["contact-get.response.json", "user-list-contacts.response.json",
                                           "user-list-contactfolders.response.json"])
def test_reads_carry_the_published_properties(response_file: str, graph: GraphHttp) -> None:
    made = graph.ok("POST", "/me/contacts", full_example(), status=201)
    path = {"contact-get.response.json": f"/me/contacts/{made['id']}", "user-list-contacts.response.json": "/me/contacts",
            "user-list-contactfolders.response.json": "/me/contactFolders"}[response_file]
    _same_shape(load(response_file), graph.ok("GET", path), response_file)
    assert made["birthday"] == "1974-07-22T00:00:00Z"
