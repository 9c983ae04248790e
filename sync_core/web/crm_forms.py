"""What the embedded CRM's screens (accounts, contacts, tasks) share: the record named in the route, the
form round trip of a create or an edit, the banners, and the sync enqueued for the users a write concerns."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from pydantic import ValidationError

from sync_core.app import jobs
from sync_core.app.services import Services
from sync_core.domain.connections import ConnectionStatus
from sync_core.domain.errors import ConcurrencyError, InvalidRecordError, NotFoundError
from sync_core.web.auth import Caller
from sync_core.web.http import HttpError, WebRequest, WebResponse, html, redirect, with_query
from sync_core.web.render import Banner, render
from sync_core.web.session import csrf_for, current_caller, require_csrf

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
Record = TypeVar("Record")
Saved = TypeVar("Saved")
# A form shown again: (values, errors, status) → the page.
ShowForm = Callable[[dict[str, str], dict[str, str], int], WebResponse]


class Invalid(Exception):
    """The form cannot be saved as it is: what is wrong, by field."""

    def __init__(self, errors: dict[str, str], what: str = "form") -> None:
        super().__init__(f"invalid {what}")
        self.errors = errors


def form_errors(exc: ValidationError, fallback: str) -> dict[str, str]:
    """The first message of each field; an error of the whole model goes under `fallback`."""
    found: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else fallback
        found.setdefault(name, str(error["msg"]).removeprefix("Value error, "))
    return found


def route_id(request: WebRequest, name: str, noun: str) -> str:
    record_id = request.route.get(name, "")
    if not _ID.match(record_id):
        raise HttpError(404, f"There is no such {noun}.", "Not found")
    return record_id


def named_record(services: Services, request: WebRequest, route: str, noun: str,
                 get: Callable[[str, list[str]], Mapping[str, Record]], missing: str) -> tuple[Caller, str, Record]:
    """The caller, and the record the route names (HttpError 404 with `missing` when there is none)."""
    caller = current_caller(services, request)
    record_id = route_id(request, route, noun)
    current = get(caller.tenant_id, [record_id]).get(record_id)
    if current is None:
        raise HttpError(404, missing, "Not found")
    return caller, record_id, current


def enqueue_for(services: Services, caller: Caller, users: Iterable[str]) -> None:
    """Enqueue the sync of each of `users` who is connected, so an edit reaches Microsoft 365 at once."""
    for user_id in sorted(set(users)):
        connection = services.connections.get(caller.tenant_id, user_id)
        if connection is not None and connection.status is ConnectionStatus.CONNECTED:
            jobs.enqueue_sync(services, caller.tenant_id, user_id, "crm-edit")


def flash_banners(request: WebRequest, messages: Mapping[str, str]) -> list[Banner]:
    message = messages.get(str(request.params.get("flash", "")))
    return [Banner("ok", message)] if message else []


def unsaved_banners(errors: Mapping[str, str], labels: Mapping[str, str]) -> list[Banner]:
    if not errors:
        return []
    return [Banner("error", "Nothing was saved:", [f"{labels.get(k, k)}: {v}" for k, v in errors.items()])]


def page(template: str, services: Services, caller: Caller, labels: Mapping[str, str], status: int = 200,
         **context: object) -> WebResponse:
    return html(render(template, csrf=csrf_for(services, caller), labels=labels, **context), status)


def submit(services: Services, caller: Caller, request: WebRequest, show: ShowForm,
           save: Callable[[dict[str, str]], Saved], saved: Callable[[Saved], None], then: str,
           editing: str = "") -> WebResponse:
    """The POST of a record's form: save(form), then saved(what it returned) and on to `then`; or the form
    shown again (400) with what was wrong. `editing` names the record an edit changes: a ConcurrencyError
    then tells the user to reload it."""
    form = request.form()
    require_csrf(services, caller, form)
    try:
        result = save(form)
    except Invalid as exc:
        return show(dict(form), exc.errors, 400)
    except InvalidRecordError as exc:
        return show(dict(form), {"form": str(exc)}, 400)
    except ConcurrencyError:
        if not editing:
            raise
        raise HttpError(409, f"Someone (or the sync) changed this {editing} while you edited it. Reload it and "
                             "make your change again.", f"The {editing} changed meanwhile") from None
    saved(result)
    return redirect(then)


def delete_named(services: Services, request: WebRequest, route: str, noun: str,
                 get: Callable[[str, list[str]], Mapping[str, Record]], delete: Callable[[str, str], None],
                 deleted: Callable[[Caller, Record], None], list_path: str) -> WebResponse:
    """Delete the record the route names, then `deleted(caller, record)`; back to the list."""
    caller = current_caller(services, request)
    record_id = route_id(request, route, noun)
    require_csrf(services, caller, request.form())
    current = get(caller.tenant_id, [record_id]).get(record_id)
    if current is None:
        raise HttpError(404, f"There is no such {noun} (it may have been deleted already).", "Not found")
    try:
        delete(caller.tenant_id, record_id)
    except NotFoundError:
        raise HttpError(404, f"There is no such {noun} (it was deleted meanwhile).", "Not found") from None
    deleted(caller, current)
    return redirect(with_query(list_path, flash="deleted"))
