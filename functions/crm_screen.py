"""The embedded CRM's screen: accounts, contacts and tasks (session-checked pages)."""
from __future__ import annotations

import azure.functions as func

from functions.http_bridge import serve
from sync_core.web import crm_screen, crm_tasks

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


@bp.route(route="crm", methods=["GET"], auth_level=ANONYMOUS)
def crm_home(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_screen.crm_home, req)


@bp.route(route="crm/accounts", methods=["GET", "POST"], auth_level=ANONYMOUS)
def crm_accounts(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_screen.accounts, req)


@bp.route(route="crm/accounts/{account_id}", methods=["GET", "POST"], auth_level=ANONYMOUS)
def crm_account(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_screen.account, req)


@bp.route(route="crm/contacts", methods=["GET", "POST"], auth_level=ANONYMOUS)
def crm_contacts(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_screen.contacts, req)


@bp.route(route="crm/contacts/{contact_id}", methods=["GET", "POST"], auth_level=ANONYMOUS)
def crm_contact(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_screen.contact, req)


@bp.route(route="crm/contacts/{contact_id}/delete", methods=["POST"], auth_level=ANONYMOUS)
def crm_contact_delete(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_screen.delete_contact, req)


@bp.route(route="crm/tasks", methods=["GET", "POST"], auth_level=ANONYMOUS)
def crm_tasks_page(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_tasks.tasks, req)


@bp.route(route="crm/tasks/{task_id}", methods=["GET", "POST"], auth_level=ANONYMOUS)
def crm_task(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_tasks.task, req)


@bp.route(route="crm/tasks/{task_id}/delete", methods=["POST"], auth_level=ANONYMOUS)
def crm_task_delete(req: func.HttpRequest) -> func.HttpResponse:
    return serve(crm_tasks.delete_task, req)
