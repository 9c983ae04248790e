"""Microsoft To Do over real HTTP against the emulator process: the unmodified msgraph-sdk for lists, tasks and
task delta; raw httpx for status codes, headers and Microsoft's published payloads."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable

from tests.emulator.conftest import GraphHttp
from tests.graph_docs import GRAPH_DOCS

FIXTURES = GRAPH_DOCS


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def default_list(graph: GraphHttp) -> str:
    lists = graph.ok("GET", "/me/todo/lists")["value"]
    return str(next(item["id"] for item in lists if item["wellknownListName"] == "defaultList"))


def new_list(graph: GraphHttp, name: str = "CRM tasks") -> str:
    return str(graph.ok("POST", "/me/todo/lists", {"displayName": name}, status=201)["id"])


def test_sdk_lists_default_create_rename_delete(make_sdk: Callable[[str], Any], aio: Any,
                                                emulator_user: dict[str, Any], graph: GraphHttp) -> None:
    from msgraph.generated.models.todo_task_list import TodoTaskList
    from msgraph.generated.models.wellknown_list_name import WellknownListName

    client = make_sdk(emulator_user["token"])

    async def scenario() -> None:
        lists = await client.me.todo.lists.get()
        assert [(x.display_name, x.wellknown_list_name) for x in lists.value] == [("Tasks", WellknownListName.DefaultList)]
        created = await client.me.todo.lists.post(TodoTaskList(display_name="CRM tasks"))
        assert created.display_name == "CRM tasks" and created.is_owner is True and created.is_shared is False
        assert created.wellknown_list_name == WellknownListName.None_
        renamed = await client.me.todo.lists.by_todo_task_list_id(created.id).patch(TodoTaskList(display_name="CRM"))
        assert renamed.display_name == "CRM"
        fetched = await client.me.todo.lists.by_todo_task_list_id(created.id).get()
        assert fetched.display_name == "CRM"
        await client.me.todo.lists.by_todo_task_list_id(created.id).delete()
        after = await client.me.todo.lists.get()
        assert created.id not in {x.id for x in after.value}

    aio(scenario())
    raw = graph.post("/me/todo/lists", {"displayName": "Etag check"})
    assert raw.status_code == 201
    first_etag = raw.json()["@odata.etag"]
    renamed = graph.ok("PATCH", f"/me/todo/lists/{raw.json()['id']}", {"displayName": "Etag check 2"})
    assert renamed["@odata.etag"] != first_etag
    assert graph.get(f"/me/todo/lists/{raw.json()['id']}/tasks/nope").status_code == 404
    refused = graph.delete(f"/me/todo/lists/{default_list(graph)}")
    assert refused.status_code == 403


def test_sdk_task_crud_with_linked_resources(make_sdk: Callable[[str], Any], aio: Any,
                                             emulator_user: dict[str, Any], graph: GraphHttp) -> None:
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
    from msgraph.generated.models.importance import Importance
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.linked_resource import LinkedResource
    from msgraph.generated.models.task_status import TaskStatus
    from msgraph.generated.models.todo_task import TodoTask

    client = make_sdk(emulator_user["token"])
    list_id = new_list(graph)
    tasks = client.me.todo.lists.by_todo_task_list_id(list_id).tasks

    async def scenario() -> None:
        created = await tasks.post(TodoTask(
            title="Call Contoso back", importance=Importance.High, categories=["CRM"],
            body=ItemBody(content="About the renewal", content_type=BodyType.Text),
            due_date_time=DateTimeTimeZone(date_time="2026-03-10T17:00:00", time_zone="W. Europe Standard Time"),
            reminder_date_time=DateTimeTimeZone(date_time="2026-03-10T08:00:00", time_zone="UTC"),
            linked_resources=[LinkedResource(web_url="https://crm.example/deals/42", application_name="CRM",
                                             display_name="Deal 42", external_id="deal-42")]))
        assert created.id and created.status == TaskStatus.NotStarted
        assert created.importance == Importance.High and created.categories == ["CRM"]
        assert created.is_reminder_on is True  # a reminder time turns the reminder on
        assert created.due_date_time.time_zone == "UTC"
        assert created.due_date_time.date_time.startswith("2026-03-10T16:00:00")  # 17:00 CET is 16:00 UTC
        [link] = created.linked_resources
        assert link.id and link.external_id == "deal-42" and link.web_url == "https://crm.example/deals/42"
        assert created.created_date_time == created.last_modified_date_time

        done = await tasks.by_todo_task_id(created.id).patch(TodoTask(status=TaskStatus.Completed))
        assert done.status == TaskStatus.Completed and done.completed_date_time is not None
        assert done.title == "Call Contoso back" and done.categories == ["CRM"]  # PATCH merges
        assert done.last_modified_date_time >= created.last_modified_date_time
        reopened = await tasks.by_todo_task_id(created.id).patch(TodoTask(status=TaskStatus.InProgress))
        assert reopened.completed_date_time is None
        fetched = await tasks.by_todo_task_id(created.id).get()
        assert fetched.status == TaskStatus.InProgress and fetched.linked_resources[0].id == link.id
        listed = await tasks.get()
        assert [t.id for t in listed.value] == [created.id]
        await tasks.by_todo_task_id(created.id).delete()
        assert (await tasks.get()).value == []

    aio(scenario())


def test_etag_and_change_key_move_on_each_edit(graph: GraphHttp) -> None:
    list_id = new_list(graph)
    created = graph.ok("POST", f"/me/todo/lists/{list_id}/tasks", {"title": "One"}, status=201)
    etags = {created["@odata.etag"]}
    for title in ("Two", "Three"):
        etags.add(graph.ok("PATCH", f"/me/todo/lists/{list_id}/tasks/{created['id']}", {"title": title})["@odata.etag"])
    assert len(etags) == 3
    stale = graph.patch(f"/me/todo/lists/{list_id}/tasks/{created['id']}", {"title": "Four"},
                        headers={"If-Match": created["@odata.etag"]})
    assert stale.status_code == 412
    stamp = dt.datetime.strptime(created["lastModifiedDateTime"][:19], "%Y-%m-%dT%H:%M:%S")
    assert created["lastModifiedDateTime"].endswith("Z") and abs(dt.datetime.utcnow() - stamp) < dt.timedelta(minutes=5)


def test_published_payloads_are_accepted_and_answered_in_shape(graph: GraphHttp) -> None:
    created_list = graph.ok("POST", "/me/todo/lists", load("todo-post-lists.request.json"), status=201)
    assert set(load("todo-post-lists.response.json")) <= set(created_list)
    listed = graph.ok("GET", "/me/todo/lists")["value"]
    for sample in load("todo-list-lists.response.json")["value"]:
        assert all(set(sample) <= set(mine) for mine in listed)
    assert set(load("todotasklist.resource.json")) <= set(listed[0])

    list_id = created_list["id"]
    task = graph.ok("POST", f"/me/todo/lists/{list_id}/tasks", load("todotasklist-post-tasks.request.json"), status=201)
    published = load("todotasklist-post-tasks.response.json")
    assert set(published) <= set(task)
    assert set(published["linkedResources"][0]) <= set(task["linkedResources"][0])
    assert task["body"] == {"content": "", "contentType": "text"} and task["status"] == "notStarted"

    updated = graph.ok("PATCH", f"/me/todo/lists/{list_id}/tasks/{task['id']}", load("todotask-update.request.json"))
    assert set(load("todotask-update.response.json")) - {"@odata.context"} <= set(updated)
    assert updated["dueDateTime"] == {"dateTime": "2020-07-25T20:00:00.0000000", "timeZone": "UTC"}
    fetched = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks/{task['id']}")
    assert set(load("todotask-get.response.json")) - {"@odata.context"} <= set(fetched)

    tasks = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks")["value"]
    sample = load("todotasklist-list-tasks.response.json")["value"][0]
    assert set(sample) - {"linkedResources@odata.context"} <= set(tasks[0])
    delta = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks/delta")
    assert set(load("todotask-delta.response.json")["value"][0]) <= set(delta["value"][0])
    assert "@odata.deltaLink" in delta


def test_bad_payloads_are_refused_like_graph(graph: GraphHttp) -> None:
    list_id = new_list(graph)
    for body in ({"title": "x", "status": "done"}, {"title": "x", "colour": "red"}, {"title": 3},
                 {"title": "x", "dueDateTime": {"dateTime": "2026-01-01T00:00:00", "timeZone": "Mars/Olympus"}},
                 {"title": "x", "linkedResources": [{"webUrl": "https://x", "rating": 5}]}):
        answer = graph.post(f"/me/todo/lists/{list_id}/tasks", body)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] in ("RequestBodyRead", "TimeZoneNotSupportedException")
    assert graph.post("/me/todo/lists", {"displayName": ""}).status_code == 400
    assert graph.post("/me/todo/lists/nope/tasks", {"title": "x"}).status_code == 404


def test_top_paging_and_status_filter(graph: GraphHttp) -> None:
    list_id = new_list(graph)
    for n in range(5):
        graph.ok("POST", f"/me/todo/lists/{list_id}/tasks",
                 {"title": f"T{n}", "status": "completed" if n % 2 else "notStarted"}, status=201)
    page = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks", params={"$top": "2"})
    titles = [t["title"] for t in page["value"]]
    while "@odata.nextLink" in page:
        page = graph.ok("GET", page["@odata.nextLink"])
        titles += [t["title"] for t in page["value"]]
    assert titles == ["T0", "T1", "T2", "T3", "T4"]
    done = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks", params={"$filter": "status eq 'completed'"})
    assert [t["title"] for t in done["value"]] == ["T1", "T3"]
    assert all(t["completedDateTime"]["timeZone"] == "UTC" for t in done["value"])
    selected = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks", params={"$select": "title"})
    assert set(selected["value"][0]) == {"@odata.etag", "id", "title"}


def test_sdk_task_delta_rounds_with_paging_and_removed(make_sdk: Callable[[str], Any], aio: Any,
                                                       emulator_user: dict[str, Any], graph: GraphHttp) -> None:
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.models.todo_task import TodoTask

    client = make_sdk(emulator_user["token"])
    list_id = new_list(graph)
    ids = [graph.ok("POST", f"/me/todo/lists/{list_id}/tasks", {"title": f"T{n}"}, status=201)["id"] for n in range(3)]
    delta = client.me.todo.lists.by_todo_task_list_id(list_id).tasks.delta

    async def round_trip(start: Any) -> tuple[list[Any], str, int]:
        config = RequestConfiguration()
        config.headers.add("Prefer", "odata.maxpagesize=2")
        page = await start.get(request_configuration=config)
        seen, pages = list(page.value), 1
        while page.odata_next_link:
            page = await delta.with_url(page.odata_next_link).get(request_configuration=config)
            seen += page.value
            pages += 1
        assert page.odata_delta_link
        return seen, page.odata_delta_link, pages

    async def scenario() -> None:
        first, link, pages = await round_trip(delta)
        assert sorted(t.id for t in first) == sorted(ids) and pages == 2
        await client.me.todo.lists.by_todo_task_list_id(list_id).tasks.by_todo_task_id(ids[0]).patch(
            TodoTask(title="T0 renamed"))
        await client.me.todo.lists.by_todo_task_list_id(list_id).tasks.by_todo_task_id(ids[1]).delete()
        second, link2, _ = await round_trip(delta.with_url(link))
        changed = {t.id: t for t in second}
        assert changed[ids[0]].title == "T0 renamed"
        assert changed[ids[1]].additional_data.get("@removed") == {"reason": "deleted"}
        assert ids[2] not in changed
        third, _, _ = await round_trip(delta.with_url(link2))
        assert third == []

    aio(scenario())


def test_deleting_a_list_removes_its_tasks_and_its_delta(graph: GraphHttp, control: Any,
                                                         emulator_user: dict[str, Any]) -> None:
    list_id = new_list(graph)
    task = graph.ok("POST", f"/me/todo/lists/{list_id}/tasks", {"title": "Gone soon"}, status=201)
    link = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks/delta()")["@odata.deltaLink"]
    assert graph.delete(f"/me/todo/lists/{list_id}").status_code == 204
    assert graph.get(f"/me/todo/lists/{list_id}").status_code == 404
    assert graph.get(f"/me/todo/lists/{list_id}/tasks/{task['id']}").status_code == 404
    assert graph.get(link).status_code == 404
    other = new_list(graph, "Other")
    stale = graph.ok("GET", f"/me/todo/lists/{other}/tasks/delta")["@odata.deltaLink"]
    control.expire_delta_tokens(emulator_user["id"])
    expired = graph.get(stale)
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "SyncStateNotFound"


def test_immutable_ids_and_users_path(graph: GraphHttp, emulator_user: dict[str, Any]) -> None:
    list_id = new_list(graph)
    prefer = {"Prefer": 'IdType="ImmutableId"'}
    created = graph.ok("POST", f"/users/{emulator_user['id']}/todo/lists/{list_id}/tasks", {"title": "x"},
                       status=201, headers=prefer)
    regular = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks")["value"][0]["id"]
    assert created["id"] != regular
    for any_id in (created["id"], regular):
        assert graph.ok("GET", f"/me/todo/lists/{list_id}/tasks/{any_id}")["title"] == "x"


def test_ui_page_creates_edits_and_deletes_tasks(graph: GraphHttp, emulator: Any, emulator_user: dict[str, Any],
                                                 http_client: Any) -> None:
    import re
    list_id = new_list(graph, "From the page")
    root = emulator.control.rsplit("/_emulator", 1)[0]
    page = http_client.get(emulator.ui).text
    assert "From the page" in page
    [create] = re.findall(rf'action="(/_emulator/ui/users/{emulator_user["id"]}/todo/lists/[^"/]+/tasks)"', page)[-1:]
    made = http_client.post(root + create, data={"title": "Typed in Outlook", "due": "2026-04-01"})
    assert made.status_code == 303
    [task] = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks")["value"]
    assert task["title"] == "Typed in Outlook" and task["dueDateTime"]["dateTime"].startswith("2026-04-01T00:00")
    edit = f"/_emulator/ui/users/{emulator_user['id']}/todo/lists/{list_id}/tasks/{task['id']}"
    assert http_client.post(root + edit, data={"title": "Done in Outlook", "status": "completed", "due": ""}).status_code == 303
    done = graph.ok("GET", f"/me/todo/lists/{list_id}/tasks/{task['id']}")
    assert done["status"] == "completed" and "dueDateTime" not in done and done["@odata.etag"] != task["@odata.etag"]
    assert http_client.post(root + edit + "/delete").status_code == 303
    assert graph.ok("GET", f"/me/todo/lists/{list_id}/tasks")["value"] == []
    refused = http_client.post(root + edit, data={"title": "x"})
    assert refused.status_code == 400
