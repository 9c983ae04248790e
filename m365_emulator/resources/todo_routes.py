"""Graph routes for Microsoft To Do task lists and tasks (/me/todo/lists/..., tasks delta), over the model in
todo.py."""
from __future__ import annotations

from typing import Any

from m365_emulator.kernel.delta import DELTA_NAMES, DeltaQuery, run_delta
from m365_emulator.kernel.emulator import Emulator, GraphContext
from m365_emulator.kernel.graph import GraphResponse, apply_select, page_body, parse_select
from m365_emulator.kernel.odata_filter import compile_filter
from m365_emulator.resources.todo import (
    DEFAULT_PAGE,
    LIST_PROPERTIES,
    TASK_PROPERTIES,
    create_list,
    create_task,
    delete_list,
    delete_task,
    find_list,
    find_task,
    list_json,
    rename_list,
    task_json,
    task_lists,
    update_task,
)


# ------------------------------------------------------------------------------------------- handlers

def _list_context(ctx: GraphContext, suffix: str = "") -> str:
    return ctx.context_url(f"users('{ctx.user.id}')/todo/lists{suffix}")


def get_lists(ctx: GraphContext) -> GraphResponse:
    select = parse_select(ctx.req.query, LIST_PROPERTIES, "todoTaskList")
    records = [list_json(c) for c in task_lists(ctx.emu, ctx.user.id)]
    if "$filter" in ctx.req.query:
        predicate = compile_filter(ctx.req.query["$filter"])
        records = [r for r in records if predicate(r, {})]
    records = [apply_select(r, select) for r in records]
    return GraphResponse(200, page_body(ctx.req.query, ctx.req.headers, records, _list_context(ctx),
                                        ctx.url("/todo/lists"), DEFAULT_PAGE))


def post_list(ctx: GraphContext) -> GraphResponse:
    coll = create_list(ctx.emu, ctx.user.id, ctx.req.json_object())
    return GraphResponse(201, {"@odata.context": _list_context(ctx, "/$entity"), **list_json(coll)})


def get_list(ctx: GraphContext) -> GraphResponse:
    coll = find_list(ctx.emu, ctx.user.id, ctx.params["list_id"])
    select = parse_select(ctx.req.query, LIST_PROPERTIES, "todoTaskList")
    return GraphResponse(200, {"@odata.context": _list_context(ctx, "/$entity"), **apply_select(list_json(coll), select)})


def patch_list(ctx: GraphContext) -> GraphResponse:
    coll = rename_list(ctx.emu, ctx.user.id, ctx.params["list_id"], ctx.req.json_object())
    return GraphResponse(200, {"@odata.context": _list_context(ctx, "/$entity"), **list_json(coll)})


def delete_list_handler(ctx: GraphContext) -> GraphResponse:
    delete_list(ctx.emu, ctx.user.id, ctx.params["list_id"])
    return GraphResponse(204)


def _task_context(ctx: GraphContext, list_id: str, suffix: str = "") -> str:
    return ctx.context_url(f"users('{ctx.user.id}')/todo/lists('{list_id}')/tasks{suffix}")


def get_tasks(ctx: GraphContext) -> GraphResponse:
    coll = find_list(ctx.emu, ctx.user.id, ctx.params["list_id"])
    select = parse_select(ctx.req.query, TASK_PROPERTIES, "todoTask")
    with ctx.store.lock:
        items = sorted(coll.items.values(), key=lambda i: (i.created, i.immutable_id))
        records = [task_json(i, ctx.immutable) for i in items]
    if "$filter" in ctx.req.query:
        predicate = compile_filter(ctx.req.query["$filter"])
        records = [r for r in records if predicate(r, {})]
    records = [apply_select(r, select) for r in records]
    return GraphResponse(200, page_body(ctx.req.query, ctx.req.headers, records, _task_context(ctx, coll.id),
                                        ctx.url(f"/todo/lists/{coll.id}/tasks"), DEFAULT_PAGE))


def post_task(ctx: GraphContext) -> GraphResponse:
    list_id = ctx.params["list_id"]
    item = create_task(ctx.emu, ctx.user.id, list_id, ctx.req.json_object())
    return GraphResponse(201, {"@odata.context": _task_context(ctx, list_id, "/$entity"),
                               **task_json(item, ctx.immutable)})


def get_task(ctx: GraphContext) -> GraphResponse:
    list_id = ctx.params["list_id"]
    item = find_task(ctx.emu, ctx.user.id, list_id, ctx.params["task_id"])
    select = parse_select(ctx.req.query, TASK_PROPERTIES, "todoTask")
    return GraphResponse(200, {"@odata.context": _task_context(ctx, list_id, "/$entity"),
                               **apply_select(task_json(item, ctx.immutable), select)})


def patch_task(ctx: GraphContext) -> GraphResponse:
    list_id = ctx.params["list_id"]
    item = update_task(ctx.emu, ctx.user.id, list_id, ctx.params["task_id"], ctx.req.json_object(),
                       ctx.req.headers.get("if-match"))
    return GraphResponse(200, {"@odata.context": _task_context(ctx, list_id, "/$entity"),
                               **task_json(item, ctx.immutable)})


def delete_task_handler(ctx: GraphContext) -> GraphResponse:
    delete_task(ctx.emu, ctx.user.id, ctx.params["list_id"], ctx.params["task_id"], ctx.req.headers.get("if-match"))
    return GraphResponse(204)


def tasks_delta(ctx: GraphContext) -> GraphResponse:
    # A deleted list is gone for delta too: its tokens answer 404 like its other URLs.
    coll = find_list(ctx.emu, ctx.user.id, ctx.params["list_id"])
    query = DeltaQuery(ctx.store, ctx.emu.codec, ctx.emu.delta, ctx.user.id, coll.id,
                       link=ctx.url(f"/todo/lists/{coll.id}/tasks/delta"),
                       context=ctx.context_url("Collection(todoTask)"),
                       render=lambda item, select, immutable: apply_select(task_json(item, immutable), select),
                       parse_select=lambda q: parse_select(q, TASK_PROPERTIES, "todoTask"))
    return run_delta(query, ctx.req)


# ---------------------------------------------------------------------------------------------- state

def state_json(emu: Emulator, user_id: str) -> dict[str, Any]:
    out = []
    for coll in task_lists(emu, user_id):
        with emu.store.lock:
            tasks = [{**task_json(i, False), "immutableId": i.immutable_id}
                     for i in sorted(coll.items.values(), key=lambda i: (i.created, i.immutable_id))]
        out.append({**list_json(coll), "changeSeq": coll.seq, "tasks": tasks})
    return {"todoLists": out}


def register(emu: Emulator) -> None:
    r = emu.router
    r.add("GET", "/todo/lists", get_lists)
    r.add("POST", "/todo/lists", post_list)
    r.add("GET", "/todo/lists/{list_id}", get_list)
    r.add("PATCH", "/todo/lists/{list_id}", patch_list)
    r.add("DELETE", "/todo/lists/{list_id}", delete_list_handler)
    for name in DELTA_NAMES:
        r.add("GET", f"/todo/lists/{{list_id}}/tasks/{name}", tasks_delta)
    r.add("GET", "/todo/lists/{list_id}/tasks", get_tasks)
    r.add("POST", "/todo/lists/{list_id}/tasks", post_task)
    r.add("GET", "/todo/lists/{list_id}/tasks/{task_id}", get_task)
    r.add("PATCH", "/todo/lists/{list_id}/tasks/{task_id}", patch_task)
    r.add("DELETE", "/todo/lists/{list_id}/tasks/{task_id}", delete_task_handler)
    emu.state_parts.append(state_json)
