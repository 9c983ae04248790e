"""JSON batching: limits, per-step routing and throttling, dependsOn, the request log, and msgraph-core's
BatchRequestContent against the emulator."""
from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from m365_emulator.server import ControlClient
from tests.emulator.conftest import GraphHttp, Isolated, new_folder
from tests.graph_docs import GRAPH_DOCS

FIXTURES = GRAPH_DOCS


def step(sid: str, method: str, url: str, body: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": sid, "method": method, "url": url}
    if body is not None:
        out["body"] = body
        out["headers"] = {"Content-Type": "application/json"}
    return out


def test_batch_routes_each_step_and_answers_like_microsoft(graph: GraphHttp, control: ControlClient,
                                                           emulator_user: dict[str, Any]) -> None:
    fid = new_folder(graph)
    existing = graph.ok("POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "Old"}, status=201)["id"]
    before = control.last_request_seq()
    answer = graph.ok("POST", "/$batch", {"requests": [
        step("1", "POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "Batched"}),
        step("2", "GET", f"me/contacts/{existing}?$select=givenName"),
        step("3", "DELETE", f"/me/contacts/{existing}x"),
        step("4", "PATCH", f"/users/{emulator_user['id']}/contacts/{existing}", {"surname": "Patched"}),
        step("5", "GET", "/me/planner/tasks"),
    ]})
    by_id = {r["id"]: r for r in answer["responses"]}
    assert [r["id"] for r in answer["responses"]] == ["1", "2", "3", "4", "5"]
    assert by_id["1"]["status"] == 201 and by_id["1"]["body"]["givenName"] == "Batched"
    assert by_id["1"]["headers"]["Content-Type"].startswith("application/json")
    assert by_id["2"]["status"] == 200 and set(by_id["2"]["body"]) >= {"id", "givenName"}
    assert "surname" not in by_id["2"]["body"]
    assert by_id["3"]["status"] == 404 and by_id["3"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert by_id["4"]["status"] == 200 and by_id["4"]["body"]["surname"] == "Patched"
    assert by_id["5"]["status"] == 400
    for key in ("date", "request-id", "client-request-id"):
        assert key in by_id["3"]["body"]["error"]["innerError"]
    shape = json.loads((FIXTURES / "batch.response.json").read_text())["responses"][0]
    assert set(shape) <= set(by_id["1"])

    log = control.requests(since=before)
    outer = [e for e in log if not e["in_batch"]]
    inner = [e for e in log if e["in_batch"]]
    assert [e["path"] for e in outer] == ["/$batch"] and len(inner) == 5
    assert {e["batch_id"] for e in inner} == {outer[0]["batch_id"]}
    assert sorted(e["status"] for e in inner) == [200, 200, 201, 400, 404]


def test_batch_limits_and_format(graph: GraphHttp) -> None:
    twenty = {"requests": [step(str(n), "GET", "/me") for n in range(20)]}
    assert graph.post("/$batch", twenty).status_code == 200
    too_many = graph.post("/$batch", {"requests": [step(str(n), "GET", "/me") for n in range(21)]})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "BadRequest"
    duplicate = graph.post("/$batch", {"requests": [step("1", "GET", "/me"), step("1", "GET", "/me")]})
    assert duplicate.status_code == 400
    no_type = graph.post("/$batch", {"requests": [{"id": "1", "method": "POST", "url": "/me/contacts",
                                                   "body": {"givenName": "x"}}]})
    assert no_type.status_code == 400
    assert "does not contain Content-Type header or body" in no_type.json()["error"]["message"]
    assert graph.post("/$batch", {"nope": []}).status_code == 400
    unauthenticated = graph.http.post(graph.base + "/$batch", json=twenty)
    assert unauthenticated.status_code == 401


def test_depends_on_orders_steps_and_fails_dependents(graph: GraphHttp) -> None:
    fid = new_folder(graph)
    answer = graph.ok("POST", "/$batch", {"requests": [
        {**step("1", "POST", f"/me/contactFolders/{fid}/contacts", {"givenName": "First"})},
        {**step("2", "GET", f"/me/contactFolders/{fid}/contacts"), "dependsOn": ["1"]},
        {**step("3", "GET", "/me/contacts/AAMkADmissing")},
        {**step("4", "GET", "/me"), "dependsOn": ["3"]},
    ]})
    by_id = {r["id"]: r for r in answer["responses"]}
    assert [c["givenName"] for c in by_id["2"]["body"]["value"]] == ["First"]
    assert by_id["3"]["status"] == 404 and by_id["4"]["status"] == 424
    cycle = graph.post("/$batch", {"requests": [{**step("1", "GET", "/me"), "dependsOn": ["2"]},
                                                {**step("2", "GET", "/me"), "dependsOn": ["1"]}]})
    assert cycle.status_code == 400


def test_a_throttled_step_is_a_429_inside_a_200_batch(isolated: Isolated) -> None:
    graph = isolated.graph()
    isolated.control.throttle(limit=3, window_seconds=30)
    response = graph.post("/$batch", {"requests": [step(str(n), "GET", "/me/contacts") for n in range(5)]})
    assert response.status_code == 200
    statuses = sorted(r["status"] for r in response.json()["responses"])
    assert statuses == [200, 200, 200, 429, 429]
    throttled = next(r for r in response.json()["responses"] if r["status"] == 429)
    assert int(throttled["headers"]["Retry-After"]) >= 1
    assert throttled["body"]["error"]["code"] == "TooManyRequests"


def test_msgraph_core_batch_request_content_round_trip(make_sdk: Callable[[str], Any], aio: Any, graph: GraphHttp,
                                                        emulator_user: dict[str, Any]) -> None:
    from msgraph.generated.models.contact import Contact
    from msgraph_core.requests.batch_request_content import BatchRequestContent

    client = make_sdk(emulator_user["token"])
    fid = new_folder(graph)

    async def scenario() -> None:
        folder = client.me.contact_folders.by_contact_folder_id(fid)
        batch = BatchRequestContent()
        for n in range(3):
            batch.add_request_information(folder.contacts.to_post_request_information(Contact(given_name=f"SDK{n}")))
        batch.add_request_information(client.me.contacts.by_contact_id("AAMkADmissing").to_get_request_information())
        ids = list(batch.requests)  # msgraph-core assigns its own uuids (it ignores a request_id argument)
        result = await client.batch.post(batch)
        assert result.get_response_status_codes() == {ids[0]: 201, ids[1]: 201, ids[2]: 201, ids[3]: 404}
        # Graph answers each body as a JSON object (Microsoft's batch example; test above). The installed
        # kiota-serialization-json reads only base64 string bodies and drops objects (microsoft/kiota-python#737),
        # so typed bodies cannot be read back through msgraph-core here, against the emulator or Microsoft.
        assert result.get_response_by_id(ids[0]).body is None

    aio(scenario())
    names = sorted(c["givenName"] for c in graph.ok("GET", f"/me/contactFolders/{fid}/contacts")["value"])
    assert names == ["SDK0", "SDK1", "SDK2"]


@pytest.mark.parametrize("request_file", sorted(p.name for p in FIXTURES.glob("batch*.request*.json")))
def test_microsofts_batch_payloads_get_an_answer_per_step(request_file: str, graph: GraphHttp) -> None:
    """Their steps target resources the emulator does not serve (planner, groups, drives): each step still gets
    its own Graph answer inside a 200 batch, and a step depending on a failed one gets 424."""
    payload = json.loads((FIXTURES / request_file).read_text())
    answer = graph.ok("POST", "/$batch", payload)
    by_id = {r["id"]: r for r in answer["responses"]}
    assert set(by_id) == {r["id"] for r in payload["requests"]}
    for request in payload["requests"]:
        status = by_id[request["id"]]["status"]
        if any(by_id[d]["status"] >= 400 for d in request.get("dependsOn", [])):
            assert status == 424
        assert status == 200 or by_id[request["id"]]["body"]["error"]["code"]
