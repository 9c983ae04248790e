"""The embedded CRM's tasks: list, create, edit and delete, through the CRM's task port. A write enqueues a
sync at once for the task's assignee and the caller (when connected), as contact writes do.

Due times are entered as wall time in the caller's time zone (their integration setting, else UTC) and
stored as an instant; an all-day task is due on a day.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sync_core.app.services import Services
from sync_core.domain.models import CrmTask, TaskStatus
from sync_core.web.auth import Caller
from sync_core.web.crm_forms import Invalid, delete_named, enqueue_for, flash_banners, form_errors, named_record
from sync_core.web.crm_forms import page, submit, unsaved_banners
from sync_core.web.http import WebRequest, WebResponse, with_query
from sync_core.web.session import current_caller

TASKS_PATH = "/api/crm/tasks"
LIST_LIMIT = 200
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


def _notify(services: Services, caller: Caller, *tasks: CrmTask | None) -> None:
    enqueue_for(services, caller, [caller.user_id, *(task.assigned_to for task in tasks if task is not None)])


def _form_page(services: Services, caller: Caller, *, title: str, action: str, values: dict[str, str],
               errors: dict[str, str], task: CrmTask | None, status: int = 200) -> WebResponse:
    return page("crm_record.html", services, caller, TASK_LABELS, status, section="Tasks", form="_task_form.html",
                title=title, banners=unsaved_banners(errors, TASK_LABELS), action=action, values=values,
                errors=errors, task=task, zone=str(_zone(services, caller)),
                accounts=services.crm.list_accounts(caller.tenant_id))


def _parse(form: dict[str, str], tenant_id: str, zone: ZoneInfo, task_id: str = "", version: str = "") -> CrmTask:
    try:
        return TaskForm.model_validate(form).to_task(tenant_id, zone, task_id, version)
    except ValidationError as exc:
        raise Invalid(form_errors(exc, "due_kind"), "task form") from None


def _saved(services: Services, caller: Caller, wanted: CrmTask, write: Callable[[CrmTask], CrmTask]) -> CrmTask:
    if not services.crm.get_accounts(caller.tenant_id, [wanted.account_id]):
        raise Invalid({"account_id": "choose one of the accounts listed"})
    return write(wanted)


def tasks(services: Services, request: WebRequest) -> WebResponse:
    caller = current_caller(services, request)
    zone = _zone(services, caller)
    if request.method == "POST":
        def show(values: dict[str, str], errors: dict[str, str], status: int) -> WebResponse:
            return _form_page(services, caller, title="New task", action=TASKS_PATH, values=values, errors=errors,
                              task=None, status=status)

        def save(form: dict[str, str]) -> CrmTask:
            return _saved(services, caller, _parse(form, caller.tenant_id, zone), services.crm.create_task)

        return submit(services, caller, request, show, save, lambda created: _notify(services, caller, created),
                      with_query(TASKS_PATH, flash="created"))
    listed = services.crm.list_tasks(caller.tenant_id, limit=LIST_LIMIT)
    accounts = services.crm.list_accounts(caller.tenant_id)
    return page("crm_tasks.html", services, caller, TASK_LABELS, title="CRM tasks",
                banners=flash_banners(request, FLASH), tasks=listed, limit=LIST_LIMIT, me=caller.user_id,
                account_names={a.id: a.name for a in accounts}, accounts=accounts,
                due={t.id: due_text(t, zone) for t in listed}, zone=str(zone), action=TASKS_PATH, task=None,
                values={"assigned_to": caller.user_id, "due_kind": "none"}, errors={})


def task(services: Services, request: WebRequest) -> WebResponse:
    caller, task_id, current = named_record(services, request, "task_id", "task", services.crm.get_tasks,
                                            "There is no such task (it may have been deleted).")
    zone = _zone(services, caller)
    action = f"{TASKS_PATH}/{task_id}"

    def show(values: dict[str, str], errors: dict[str, str], status: int) -> WebResponse:
        return _form_page(services, caller, title="Edit task", action=action, values=values, errors=errors,
                          task=current, status=status)

    if request.method != "POST":
        return show(task_values(current, zone), {}, 200)

    def save(form: dict[str, str]) -> CrmTask:
        wanted = _parse(form, caller.tenant_id, zone, task_id, form.get("version", ""))
        return _saved(services, caller, wanted, services.crm.update_task)

    return submit(services, caller, request, show, save, lambda updated: _notify(services, caller, current, updated),
                  with_query(TASKS_PATH, flash="updated"), editing="task")


def delete_task(services: Services, request: WebRequest) -> WebResponse:
    return delete_named(services, request, "task_id", "task", services.crm.get_tasks, services.crm.delete_task,
                        lambda caller, current: _notify(services, caller, current), TASKS_PATH)
