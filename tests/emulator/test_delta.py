"""Delta rounds on a contact folder, driven by the unmodified msgraph-sdk (paging with nextLink, @removed in
additional_data) and by raw HTTP for expiry and token errors."""
from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from m365_emulator.server import ControlClient
from tests.emulator.conftest import IMMUTABLE, GraphHttp, Isolated, new_folder


def sdk_round(client: Any, aio: Any, folder_id: str, link: str | None = None, select: list[str] | None = None,
              page_size: int | None = None, immutable: bool = False) -> tuple[list[Any], str, int]:
    """One whole delta round through the SDK: (items, deltaLink, pages)."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.users.item.contact_folders.item.contacts.delta.delta_request_builder import DeltaRequestBuilder

    builder = client.me.contact_folders.by_contact_folder_id(folder_id).contacts.delta

    def config() -> Any:
        cfg = RequestConfiguration()
        if page_size:
            cfg.headers.add("Prefer", f"odata.maxpagesize={page_size}")
        if immutable:
            cfg.headers.add("Prefer", IMMUTABLE)
        return cfg

    async def run() -> tuple[list[Any], str, int]:
        items: list[Any] = []
        pages = 0
        if link is None:
            cfg = config()
            if select:
                cfg.query_parameters = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=select)
            page = await builder.get(cfg)
        else:
            page = await builder.with_url(link).get(config())
        while True:
            pages += 1
            items += page.value
            if page.odata_next_link:
                page = await builder.with_url(page.odata_next_link).get(config())
                continue
            assert page.odata_delta_link
            return items, page.odata_delta_link, pages

    return aio(run())


def removed(items: list[Any]) -> dict[str, str]:
    return {i.id: i.additional_data["@removed"]["reason"] for i in items if "@removed" in (i.additional_data or {})}


def live(items: list[Any]) -> dict[str, Any]:
    return {i.id: i for i in items if "@removed" not in (i.additional_data or {})}


def test_delta_rounds_with_paging_updates_deletes_and_moves(make_sdk: Callable[[str], Any], aio: Any, graph: GraphHttp,
                                                           control: ControlClient, emulator_user: dict[str, Any]) -> None:
    client = make_sdk(emulator_user["token"])
    fid, other = new_folder(graph, "Synced"), new_folder(graph, "Elsewhere")
    ids = [graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": f"C{n}", "surname": "Delta"},
                    status=201)["id"] for n in range(5)]
    outsider = graph.ok("POST", f"/me/contactFolders/{other}/contacts", {"givenName": "Incoming"}, status=201)["id"]

    items, link, pages = sdk_round(client, aio, fid, select=["givenName"], page_size=2)
    assert pages == 3
    assert sorted(live(items)) == sorted(ids)
    assert all(c.given_name and c.surname is None for c in items)  # $select holds on every page

    quiet, link, _ = sdk_round(client, aio, fid, link, page_size=2)
    assert quiet == []

    graph.ok("PATCH", f"/me/contacts/{ids[0]}", {"givenName": "C0 edited"})
    graph.ok("PATCH", f"/me/contacts/{ids[0]}", {"givenName": "C0 edited twice"})
    graph.delete(f"/me/contacts/{ids[1]}")
    moved_out = control.move_contact(emulator_user["id"], ids[2], other)
    moved_in = control.move_contact(emulator_user["id"], outsider, fid)
    created = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "New"}, status=201)["id"]

    changes, link, _ = sdk_round(client, aio, fid, link, page_size=2)
    assert removed(changes) == {ids[1]: "deleted", ids[2]: "changed"}
    current = live(changes)
    assert set(current) == {ids[0], moved_in["id"], created}  # each changed item once, in its latest state
    assert current[ids[0]].given_name == "C0 edited twice"
    assert current[moved_in["id"]].given_name == "Incoming"
    assert current[ids[0]].surname is None  # still the first round's $select
    assert moved_out["id"] not in current

    nothing, _, _ = sdk_round(client, aio, fid, link)
    assert nothing == []


def test_immutable_ids_in_delta_and_move_back(make_sdk: Callable[[str], Any], aio: Any, graph: GraphHttp,
                                              control: ControlClient, emulator_user: dict[str, Any]) -> None:
    client = make_sdk(emulator_user["token"])
    fid, other = new_folder(graph, "Home"), new_folder(graph, "Away")
    made = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "Roamer"}, status=201,
                    headers={"Prefer": IMMUTABLE})
    items, link, _ = sdk_round(client, aio, fid, immutable=True)
    assert list(live(items)) == [made["id"]]
    control.move_contact(emulator_user["id"], made["id"], other)
    changes, link, _ = sdk_round(client, aio, fid, link, immutable=True)
    assert removed(changes) == {made["id"]: "changed"}
    control.move_contact(emulator_user["id"], made["id"], fid)
    back, _, _ = sdk_round(client, aio, fid, link, immutable=True)
    assert list(live(back)) == [made["id"]] and removed(back) == {}


def test_changes_during_a_round_come_in_the_next_round(graph: GraphHttp) -> None:
    fid = new_folder(graph)
    first = [graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": f"R{n}"}, status=201)["id"]
             for n in range(3)]
    page = graph.ok("GET", f"/me/contactFolders/{fid}/contacts/delta", headers={"Prefer": "odata.maxpagesize=1"})
    assert page["value"][0]["id"] == first[0]
    late = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "Late"}, status=201)["id"]
    graph.ok("PATCH", f"/me/contacts/{first[2]}", {"surname": "Edited mid-round"})
    seen = [page["value"][0]["id"]]
    while "@odata.nextLink" in page:
        page = graph.ok("GET", page["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=1"})
        seen += [c["id"] for c in page["value"]]
    assert late not in seen
    nxt = graph.ok("GET", page["@odata.deltaLink"])
    assert {c["id"] for c in nxt["value"]} == {late, first[2]}
    assert set(first) | {late} == set(seen) | {late, first[2]}


def test_page_size_preference_is_applied_and_links_have_tokens(graph: GraphHttp) -> None:
    fid = new_folder(graph)
    for n in range(3):
        graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": f"T{n}"}, status=201)
    response = graph.get(f"/me/contactFolders/{fid}/contacts/delta()", headers={"Prefer": "odata.maxpagesize=2"})
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=2"
    body = response.json()
    assert len(body["value"]) == 2 and "@odata.deltaLink" not in body
    assert "$skiptoken" in parse_qs(urlsplit(body["@odata.nextLink"]).query)
    last = graph.ok("GET", body["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"})
    assert "$deltatoken" in parse_qs(urlsplit(last["@odata.deltaLink"]).query)


def test_expired_and_garbled_tokens(isolated: Isolated) -> None:
    control = isolated.control
    user, token = control.new_user_with_token()
    graph = isolated.graph(token)
    fid = new_folder(graph)
    graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "Aging"}, status=201)
    link = graph.ok("GET", f"/me/contactFolders/{fid}/contacts/delta")["@odata.deltaLink"]
    assert graph.get(link).status_code == 200

    query = parse_qs(urlsplit(link).query)
    garbled = graph.get(f"/me/contactFolders/{fid}/contacts/delta", params={"$deltatoken": query["$deltatoken"][0][:-3] + "abc"})
    assert garbled.status_code == 400
    other = new_folder(graph, "Other")
    foreign = graph.get(f"/me/contactFolders/{other}/contacts/delta", params={"$deltatoken": query["$deltatoken"][0]})
    assert foreign.status_code == 400

    control.expire_delta_tokens(user["id"])
    gone = graph.get(link)
    assert gone.status_code == 410
    error = gone.json()["error"]
    assert error["code"].lower() == "syncstatenotfound" and error["innerError"]["request-id"]

    fresh = graph.ok("GET", f"/me/contactFolders/{fid}/contacts/delta")["@odata.deltaLink"]
    control.advance_clock(6 * 24 * 3600)
    token = control.token(user["id"])  # the old access token expired with the clock
    assert graph.get(fresh, token=token).status_code == 200
    control.advance_clock(2 * 24 * 3600)
    token = control.token(user["id"])
    assert graph.get(fresh, token=token).status_code == 410


def test_deleting_the_folder_reports_its_contacts_removed(graph: GraphHttp) -> None:
    fid = new_folder(graph)
    ids = {graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": f"F{n}"}, status=201)["id"]
           for n in range(2)}
    link = graph.ok("GET", f"/me/contactFolders/{fid}/contacts/delta")["@odata.deltaLink"]
    graph.delete(f"/me/contactFolders/{fid}")
    after = graph.ok("GET", link)
    assert {c["id"]: c["@removed"]["reason"] for c in after["value"]} == {i: "deleted" for i in ids}
    assert graph.get(f"/me/contactFolders/{fid}/contacts/delta").status_code == 404
