"""The embedded CRM's tasks: list, create, edit and delete, through the CRM's task port. A write enqueues a
sync at once for the task's assignee and the caller (when connected), as contact writes do.

Due times are entered as wall time in the caller's time zone (their integration setting, else UTC) and
stored as an instant; an all-day task is due on a day.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sync_core.app import jobs
from sync_core.app.services import Services
from sync_core.domain.connections import ConnectionStatus
from sync_core.domain.errors import ConcurrencyError, InvalidRecordError, NotFoundError
from sync_core.domain.models import CrmTask, TaskStatus
from sync_core.web.http import HttpError, WebRequest, WebResponse, html, redirect, with_query
from sync_core.web.render import Banner, render
from sync_core.web.session import csrf_for, current_caller, require_csrf
from sync_core.web.auth import Caller

TASKS_PATH = "/api/crm/tasks"
LIST_LIMIT = 200
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TASK_LABELS = {
    "account_id": "Account", "assigned_to": "Assigned to (CRM user id)", "subject": "Subject",
    "description": "Description", "due_kind": "Due", "due_date": "Due date", "due_time": "Due time",
    "done": "Done",
}
FLASH = {"created": "Task saved.", "updated": "Task saved.", "deleted": "Task deleted."}


class TaskForm(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    account_id: str = Field(min_length=1, max_length=64)
    assigned_to: str = Field(min_length=1, max_length=128)
    subject: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", max_length=4000)
    due_kind: str = Field(default="none", pattern=r"^(none|day|time)$")
    due_date: date | None = None
    due_time: time | None = None
    done: bool = False

    @model_validator(mode="before")
    @classmethod
    def _blanks_are_none(cls, data: object) -> object:
        if isinstance(data, dict):
            data = {k: (None if k in ("due_date", "due_time") and not str(v).strip() else v) for k, v in data.items()}
            data["done"] = bool(data.get("done"))
        return data

    @model_validator(mode="after")
    def _due_is_complete(self) -> TaskForm:
        if self.due_kind in ("day", "time") and self.due_date is None:
            raise ValueError("enter the due date")
        if self.due_kind == "time" and self.due_time is None:
            raise ValueError("enter the due time")
        return self

    def to_task(self, tenant_id: str, zone: ZoneInfo, task_id: str = "", version: str = "") -> CrmTask:
        due_date = self.due_date if self.due_kind == "day" else None
        due_at = (datetime.combine(self.due_date, self.due_time, tzinfo=zone)
                  if self.due_kind == "time" and self.due_date and self.due_time else None)
        return CrmTask(id=task_id, tenant_id=tenant_id, account_id=self.account_id, assigned_to=self.assigned_to,
                       subject=self.subject, description=self.description, due_date=due_date, due_at=due_at,
                       status=TaskStatus.DONE if self.done else TaskStatus.OPEN, version=version)


def _zone(services: Services, caller: Caller) -> ZoneInfo:
    connection = services.connections.get(caller.tenant_id, caller.user_id)
    return ZoneInfo(connection.settings.time_zone if connection else "UTC")


def task_values(task: CrmTask, zone: ZoneInfo) -> dict[str, str]:
    values = {"account_id": task.account_id, "assigned_to": task.assigned_to, "subject": task.subject,
              "description": task.description, "due_kind": "none", "due_date": "", "due_time": "",
              "done": "on" if task.status is TaskStatus.DONE else ""}
    if task.due_date is not None:
        values.update(due_kind="day", due_date=task.due_date.isoformat())
    elif task.due_at is not None:
        local = task.due_at.astimezone(zone)
        values.update(due_kind="time", due_date=local.date().isoformat(), due_time=f"{local:%H:%M}")
    return values


def due_text(task: CrmTask, zone: ZoneInfo) -> str:
    if task.due_date is not None:
        return f"{task.due_date:%d %b %Y} (all day)"
    if task.due_at is not None:
        return f"{task.due_at.astimezone(zone):%d %b %Y, %H:%M}"
    return ""


def _errors(exc: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "due_kind"
        found.setdefault(name, str(error["msg"]).removeprefix("Value error, "))
    return found


def _notify(services: Services, caller: Caller, *tasks: CrmTask | None) -> None:
    users = {caller.user_id} | {task.assigned_to for task in tasks if task is not None}
    for user_id in sorted(users):
        connection = services.connections.get(caller.tenant_id, user_id)
        if connection is not None and connection.status is ConnectionStatus.CONNECTED:
            jobs.enqueue_sync(services, caller.tenant_id, user_id, "crm-edit")


def _form_page(services: Services, caller: Caller, *, title: str, action: str, values: dict[str, str],
               errors: dict[str, str], task: CrmTask | None, status: int = 200) -> WebResponse:
    banners = ([Banner("error", "Nothing was saved:", [f"{TASK_LABELS.get(k, k)}: {v}" for k, v in errors.items()])]
               if errors else [])
    body = render("crm_task.html", title=title, banners=banners, csrf=csrf_for(services, caller), action=action,
                  values=values, errors=errors, task=task, labels=TASK_LABELS, zone=str(_zone(services, caller)),
                  accounts=services.crm.list_accounts(caller.tenant_id))
    return html(body, status)


def _parse(form: dict[str, str], tenant_id: str, zone: ZoneInfo, task_id: str = "", version: str = "") -> CrmTask:
    try:
        return TaskForm.model_validate(form).to_task(tenant_id, zone, task_id, version)
    except ValidationError as exc:
        raise _Invalid(_errors(exc)) from None


class _Invalid(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("invalid task form")
        self.errors = errors


def _task_id(request: WebRequest) -> str:
    task_id = request.route.get("task_id", "")
    if not _ID.match(task_id):
        raise HttpError(404, "There is no such task.", "Not found")
    return task_id


def tasks(services: Services, request: WebRequest) -> WebResponse:
    caller = current_caller(services, request)
    zone = _zone(services, caller)
    if request.method == "POST":
        form = request.form()
        require_csrf(services, caller, form)
        try:
            wanted = _parse(form, caller.tenant_id, zone)
            if not services.crm.get_accounts(caller.tenant_id, [wanted.account_id]):
                raise _Invalid({"account_id": "choose one of the accounts listed"})
            created = services.crm.create_task(wanted)
        except (_Invalid, InvalidRecordError) as exc:
            errors = exc.errors if isinstance(exc, _Invalid) else {"form": str(exc)}
            return _form_page(services, caller, title="New task", action=TASKS_PATH, values=dict(form),
                              errors=errors, task=None, status=400)
        _notify(services, caller, created)
        return redirect(with_query(TASKS_PATH, flash="created"))
    listed = services.crm.list_tasks(caller.tenant_id, limit=LIST_LIMIT)
    accounts = services.crm.list_accounts(caller.tenant_id)
    message = FLASH.get(str(request.params.get("flash", "")))
    body = render("crm_tasks.html", title="CRM tasks", banners=[Banner("ok", message)] if message else [],
                  csrf=csrf_for(services, caller), tasks=listed, limit=LIST_LIMIT, me=caller.user_id,
                  account_names={a.id: a.name for a in accounts}, accounts=accounts, labels=TASK_LABELS,
                  due={t.id: due_text(t, zone) for t in listed}, zone=str(zone), action=TASKS_PATH, task=None,
                  values={"assigned_to": caller.user_id, "due_kind": "none"}, errors={})
    return html(body)


def task(services: Services, request: WebRequest) -> WebResponse:
    caller = current_caller(services, request)
    task_id = _task_id(request)
    zone = _zone(services, caller)
    current = services.crm.get_tasks(caller.tenant_id, [task_id]).get(task_id)
    if current is None:
        raise HttpError(404, "There is no such task (it may have been deleted).", "Not found")
    action = f"{TASKS_PATH}/{task_id}"
    if request.method != "POST":
        return _form_page(services, caller, title="Edit task", action=action, values=task_values(current, zone),
                          errors={}, task=current)
    form = request.form()
    require_csrf(services, caller, form)
    try:
        wanted = _parse(form, caller.tenant_id, zone, task_id, form.get("version", ""))
        if not services.crm.get_accounts(caller.tenant_id, [wanted.account_id]):
            raise _Invalid({"account_id": "choose one of the accounts listed"})
        updated = services.crm.update_task(wanted)
    except _Invalid as exc:
        return _form_page(services, caller, title="Edit task", action=action, values=dict(form), errors=exc.errors,
                          task=current, status=400)
    except ConcurrencyError:
        raise HttpError(409, "Someone (or the sync) changed this task while you edited it. Reload it and make "
                             "your change again.", "The task changed meanwhile") from None
    except InvalidRecordError as exc:
        return _form_page(services, caller, title="Edit task", action=action, values=dict(form),
                          errors={"form": str(exc)}, task=current, status=400)
    _notify(services, caller, current, updated)
    return redirect(with_query(TASKS_PATH, flash="updated"))


def delete_task(services: Services, request: WebRequest) -> WebResponse:
    caller = current_caller(services, request)
    task_id = _task_id(request)
    form = request.form()
    require_csrf(services, caller, form)
    current = services.crm.get_tasks(caller.tenant_id, [task_id]).get(task_id)
    if current is None:
        raise HttpError(404, "There is no such task (it may have been deleted already).", "Not found")
    try:
        services.crm.delete_task(caller.tenant_id, task_id)
    except NotFoundError:
        raise HttpError(404, "There is no such task (it was deleted meanwhile).", "Not found") from None
    _notify(services, caller, current)
    return redirect(with_query(TASKS_PATH, flash="deleted"))
