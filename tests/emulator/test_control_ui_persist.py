"""The control API, the HTML page and its forms, and --state-file persistence across a real restart."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from m365_emulator.server import EmulatorProcess
from tests.emulator.conftest import IMMUTABLE, GraphHttp, Isolated, new_folder

CRM_PROP = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name CrmId"


def test_ready_file_names_every_endpoint(emulator: EmulatorProcess) -> None:
    ready = json.loads(emulator.ready_file.read_text())
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1\.0", ready["graph"])
    assert ready["control"] == ready["graph"].replace("/v1.0", "/_emulator")
    assert ready["tenant_id"] and set(ready) >= {"authority", "ca_file"}
    if ready["authority"] is not None:  # the identity platform is present in this checkout
        assert re.fullmatch(rf"https://127\.0\.0\.1:\d+/{ready['tenant_id']}", ready["authority"])
        assert Path(ready["ca_file"]).exists()


def test_request_log_counts_and_since(graph: GraphHttp, control: Any, emulator_user: dict[str, Any]) -> None:
    before = control.last_request_seq()
    graph.get("/me")
    graph.get("/me/contacts")
    graph.get("/me/nothing-here")
    entries = [e for e in control.requests(since=before) if e["user_id"] == emulator_user["id"]]
    assert [(e["method"], e["path"], e["status"], e["in_batch"]) for e in entries] == [
        ("GET", "/me", 200, False), ("GET", "/me/contacts", 200, False), ("GET", "/me/nothing-here", 400, False)]
    assert all(e["client_id"] == "emulator-control" for e in entries)
    assert entries[0]["seq"] > before and entries[0]["seq"] < entries[1]["seq"] < entries[2]["seq"]
    assert control.requests(since=entries[-1]["seq"]) == [e for e in control.requests(since=entries[-1]["seq"])]


def test_clock_advance_expires_access_tokens(isolated: Isolated) -> None:
    user, token = isolated.control.new_user_with_token()
    graph = isolated.graph(token)
    assert graph.get("/me").status_code == 200
    isolated.control.advance_clock(3601)
    expired = graph.get("/me")
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "expired" in expired.json()["error"]["message"]
    assert graph.get("/me", token=isolated.control.token(user["id"])).status_code == 200


def test_state_dump_shows_both_ids_and_extended_properties(graph: GraphHttp, control: Any,
                                                           emulator_user: dict[str, Any]) -> None:
    fid = new_folder(graph)
    made = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {
        "givenName": "Dumped", "singleValueExtendedProperties": [{"id": CRM_PROP, "value": "crm-1"}]},
        status=201, headers={"Prefer": IMMUTABLE})
    state = control.state(emulator_user["id"])
    folder = next(f for f in state["contactFolders"] if f["id"] == fid)
    [contact] = folder["contacts"]
    assert contact["immutableId"] == made["id"] and contact["id"] != made["id"]
    assert contact["singleValueExtendedProperties"] == [{"id": CRM_PROP, "value": "crm-1"}]
    assert folder["changeSeq"] == 1


def test_control_api_validates_and_reports_conflicts(emulator: EmulatorProcess, emulator_user: dict[str, Any],
                                                    http_client: httpx.Client) -> None:
    base = emulator.control
    assert http_client.post(base + "/users", json={"displayName": "No UPN"}).status_code == 400
    dup = http_client.post(base + "/users", json={"displayName": "Dup", "userPrincipalName": emulator_user["userPrincipalName"]})
    assert dup.status_code == 409
    assert http_client.post(base + "/users/nobody/token").status_code == 404
    assert http_client.post(base + "/clock", json={"advance_seconds": "soon"}).status_code == 400
    app = http_client.post(base + "/apps", json={"client_id": "crm-app", "client_secret": "s3cret",
                                                 "redirect_uris": ["http://127.0.0.1:7071/auth/callback"]})
    assert app.status_code == 201
    assert http_client.post(base + f"/users/{emulator_user['id']}/revoke").json()["revoked"] is True


def test_reset_forgets_everything(isolated: Isolated) -> None:
    user, token = isolated.control.new_user_with_token()
    graph = isolated.graph(token)
    graph.ok("POST", "/me/contacts", {"givenName": "Forgotten"}, status=201)
    isolated.control.add_fault(path_regex="^/nothing$", status=500)
    isolated.control.reset()
    assert isolated.control.requests() == []
    assert graph.get("/me").status_code == 401
    assert isolated.control._call("GET", "/faults")["value"] == []
    assert all(u["id"] != user["id"] for u in isolated.control._call("GET", "/users")["value"])


# ------------------------------------------------------------------------------------------------ UI

def test_ui_renders_escaped_and_its_forms_change_the_mailbox(emulator: EmulatorProcess, graph: GraphHttp,
                                                            emulator_user: dict[str, Any],
                                                            http_client: httpx.Client) -> None:
    uid = emulator_user["id"]
    source, dest = new_folder(graph, "UI source"), new_folder(graph, "UI <dest>")
    made = graph.ok("POST", f"/me/contactFolders/{source}/contacts",
                    {"givenName": "<script>alert(1)</script>", "surname": "O'Hara & Sons"}, status=201,
                    headers={"Prefer": IMMUTABLE})
    page = http_client.get(emulator.ui)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "UI &lt;dest&gt;" in page.text
    assert "O&#x27;Hara &amp; Sons" in page.text
    assert "To Do" in page.text and "Calendar" in page.text

    base = f"{emulator.control}/ui/users/{uid}"
    edited = http_client.post(f"{base}/contacts/{made['id']}", data={
        "givenName": "Fixed", "surname": "O'Hara & Sons", "email": "fixed@contoso.test", "companyName": "Contoso"})
    assert edited.status_code == 303
    after = graph.ok("GET", f"/me/contacts/{made['id']}", headers={"Prefer": IMMUTABLE})
    assert (after["givenName"], after["companyName"]) == ("Fixed", "Contoso")
    assert after["emailAddresses"] == [{"name": "fixed@contoso.test", "address": "fixed@contoso.test"}]
    assert after["changeKey"] != made["changeKey"]

    assert http_client.post(f"{base}/contacts/{made['id']}/move", data={"destinationId": dest}).status_code == 303
    assert graph.ok("GET", f"/me/contacts/{made['id']}", headers={"Prefer": IMMUTABLE})["parentFolderId"] == dest

    created = http_client.post(f"{base}/folders/{source}/contacts", data={"givenName": "Typed", "surname": "In"})
    assert created.status_code == 303
    assert [c["displayName"] for c in graph.ok("GET", f"/me/contactFolders/{source}/contacts")["value"]] == ["Typed In"]

    assert http_client.post(f"{base}/contacts/{made['id']}/delete").status_code == 303
    assert graph.get(f"/me/contacts/{made['id']}", headers={"Prefer": IMMUTABLE}).status_code == 404

    assert http_client.post(f"{base}/folders", data={"displayName": "From the page"}).status_code == 303
    names = [f["displayName"] for f in graph.ok("GET", "/me/contactFolders")["value"]]
    assert "From the page" in names
    refused = http_client.post(f"{base}/folders", data={"displayName": "From the page"})
    assert refused.status_code == 400 and "already exists" in refused.text


# ------------------------------------------------------------------------------------------ restart

@pytest.fixture
def restartable(tmp_path: Path) -> Any:
    process = EmulatorProcess(workdir=tmp_path / "run", state_file=tmp_path / "state" / "emulator.json",
                              throttle_limit=3, throttle_window=60, max_concurrency=2)
    with process:
        yield process


def test_state_file_survives_a_restart(restartable: EmulatorProcess, http_client: httpx.Client) -> None:
    control = restartable.control_client()
    try:
        user, token = control.new_user_with_token()
        graph = GraphHttp(restartable.graph, token, http_client)
        fid = new_folder(graph, "Persisted")
        made = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {
            "givenName": "Durable", "singleValueExtendedProperties": [{"id": CRM_PROP, "value": "crm-9"}]}, status=201)
        assert graph.get("/me").status_code == 200
        throttled = graph.get("/me")  # the 4th request: over the CLI limit of 3 per minute
        assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "TooManyRequests"
        assert control.throttle()["max_concurrency"] == 2
        control.throttle(limit=10_000)
        link = graph.ok("GET", f"/me/contactFolders/{fid}/contacts/delta")["@odata.deltaLink"]
        tenant = restartable.tenant_id
    finally:
        control.close()

    restartable.restart()
    assert restartable.tenant_id == tenant
    control = restartable.control_client()
    assert control.throttle()["limit"] == 3  # settings come from the command line, not the state file
    control.throttle(limit=10_000)
    graph = GraphHttp(restartable.graph, token, http_client)
    again = graph.ok("GET", f"/me/contacts/{made['id']}", params={
        "$expand": f"singleValueExtendedProperties($filter=id eq '{CRM_PROP}')"})
    assert again["givenName"] == "Durable" and again["changeKey"] == made["changeKey"]
    assert again["singleValueExtendedProperties"][0]["value"] == "crm-9"
    old_port_link = re.sub(r"^http://[^/]+/v1\.0", restartable.graph, link)
    assert graph.ok("GET", old_port_link)["value"] == []  # the deltaLink from before the restart still works
    graph.ok("PATCH", f"/me/contacts/{made['id']}", {"surname": "Changed"})
    assert [c["surname"] for c in graph.ok("GET", old_port_link)["value"]] == ["Changed"]
    assert user["id"] in {u["id"] for u in control.http.get("/users").json()["value"]}
    control.close()
    graph.ok("PATCH", f"/me/contacts/{made['id']}", {"jobTitle": "Written at shutdown"})
    restartable.restart()  # at once: the change must be saved when the process is asked to stop
    graph = GraphHttp(restartable.graph, token, http_client)
    assert graph.ok("GET", f"/me/contacts/{made['id']}")["jobTitle"] == "Written at shutdown"
