"""The integration's pages: launch, settings, sync now, connect (OAuth), and remove integration.

Each handler takes the Services and a WebRequest and returns a WebResponse; `respond` wraps them
with error pages and security headers. The caller always comes from the session cookie, never
from a parameter; every state-changing form is a POST carrying the session's CSRF token.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import quote

from sync_core.app import jobs
from sync_core.app.services import Services
from sync_core.domain.connections import Connection, ConnectionStatus
from sync_core.app.disconnect import LEFT_TEXT, SyncRunning, disconnect_user, what_will_be_deleted
from sync_core.domain.errors import ConcurrencyError, SyncError
from sync_core.domain.models import UserSyncSettings
from sync_core.app.oauth import OAuthError
from sync_core.app.subscriptions import subscribe_user
from sync_core.web.http import HttpError, WebRequest, WebResponse, html, redirect, with_query
from sync_core.web.preview import PreviewView, build_preview
from sync_core.web.render import Banner, render
from sync_core.web.respond import SETTINGS_PATH, Handler, Link, message_page
from sync_core.web.session import csrf_for, current_caller, require_csrf, start_session
from sync_core.web.settings_form import (
    ALL_DAY_CHOICES,
    LABELS,
    MODE_CHOICES,
    SCOPE_CHOICES,
    TARGET_CHOICES,
    TIMED_CHOICES,
    FormInvalid,
    FormState,
    form_values,
    parse_settings_form,
    submitted_values,
)
from sync_core.web.status import status_view
from sync_core.web.auth import AuthError, Caller

log = logging.getLogger("sync_core.web")

PAGE_TITLE = "Contacts & Calendar Integrations"
_TASK_FIELDS = ("task_target", "all_day_reminder", "all_day_reminder_time", "timed_reminder_minutes",
                "task_import_account", "time_zone", "event_duration_minutes")


# Flash messages travel as a fixed code in the query string: a link can never inject text.
FLASH: dict[str, Banner] = {
    "connected": Banner("ok", "Connected to Microsoft 365. The first sync has been queued."),
    "disconnected": Banner("ok", "Disconnected from Microsoft 365. Your CRM data stays as it is."),
    "saved": Banner("ok", "Settings saved."),
    "sync-queued": Banner("ok", "A sync has been queued; this page shows its outcome when it finishes."),
}


def flash_banners(params: Mapping[str, str]) -> list[Banner]:
    found = FLASH.get(params.get("flash", ""))
    if found is None:
        return []
    banners = [found]
    left = [LEFT_TEXT[code] for code in params.get("left", "").split(",") if code in LEFT_TEXT]
    if found is FLASH["disconnected"] and left:
        banners.append(Banner("warn", "These could not be deleted in Microsoft 365; you can delete them in Outlook:",
                              left))
    return banners


# -- guards ----------------------------------------------------------------------------------------

def _paid_caller(services: Services, request: WebRequest) -> Caller:
    """The session's caller, on a paid plan (free plan: a page saying so, and no Microsoft call)."""
    caller = current_caller(services, request)
    if not services.tenants.get(caller.tenant_id).integration_allowed:
        raise HttpError(403, "Contacts & Calendar Integrations is part of the paid plans. Ask your CRM "
                             "administrator to upgrade to use it.", "This integration needs a paid plan")
    return caller


def _form_caller(services: Services, request: WebRequest) -> tuple[Caller, dict[str, str]]:
    caller = _paid_caller(services, request)
    form = request.form()
    require_csrf(services, caller, form)
    return caller, form


def _connection(services: Services, caller: Caller) -> Connection | None:
    return services.connections.get(caller.tenant_id, caller.user_id)


def _preview(services: Services, settings: UserSyncSettings, *, unsaved: bool = False) -> PreviewView:
    return build_preview(services.crm, settings, tasks_crm=services.crm, unsaved=unsaved)


def _default_settings(caller: Caller) -> UserSyncSettings:
    return UserSyncSettings(tenant_id=caller.tenant_id, user_id=caller.user_id)


# -- launch ----------------------------------------------------------------------------------------

def launch(services: Services, request: WebRequest) -> WebResponse:
    caller, cookie = start_session(services, request.params)
    log.info("session started", extra={"event": "launch", "tenant": caller.tenant_id, "user": caller.user_id})
    return redirect(SETTINGS_PATH, {"Set-Cookie": cookie})


# -- settings --------------------------------------------------------------------------------------

def _settings_page(services: Services, caller: Caller, connection: Connection | None, form: FormState,
                   preview: PreviewView, banners: list[Banner], status: int = 200) -> WebResponse:
    run = None
    if connection is not None and connection.status is not ConnectionStatus.NOT_CONNECTED:
        runs = services.state.latest_runs(caller.tenant_id, caller.user_id, 1)
        run = runs[0] if runs else None
    body = render(
        "settings.html", title=PAGE_TITLE, banners=banners, csrf=csrf_for(services, caller),
        status=status_view(connection, run), form=form, labels=LABELS, preview=preview,
        mode_choices=MODE_CHOICES, scope_choices=SCOPE_CHOICES, target_choices=TARGET_CHOICES,
        all_day_choices=ALL_DAY_CHOICES, timed_choices=TIMED_CHOICES,
        task_errors=any(name in form.errors for name in _TASK_FIELDS),
    )
    return html(body, status)


def settings_page(services: Services, request: WebRequest) -> WebResponse:
    caller = _paid_caller(services, request)
    connection = _connection(services, caller)
    settings = connection.settings if connection else _default_settings(caller)
    return _settings_page(services, caller, connection, FormState(form_values(settings), {}),
                          _preview(services, settings), flash_banners(request.params))


def _save_settings(services: Services, caller: Caller, wanted: UserSyncSettings) -> Connection:
    for _ in range(5):
        connection = services.connections.get_or_create(caller.tenant_id, caller.user_id)
        try:
            return services.connections.save(connection.model_copy(update={"settings": wanted}))
        except ConcurrencyError:
            continue  # a sync recorded its outcome meanwhile: apply the settings to the fresh row
    raise ConcurrencyError("the connection kept changing while saving settings")


def _reevaluate(services: Services, tenant_id: str, user_id: str, old: UserSyncSettings,
                new: UserSyncSettings) -> None:
    """After a change of which contacts sync, or in which direction, the next sync must look at every
    record again, not only at what changed since: replay the CRM feed from the start and (on a mode
    change) run a full Outlook delta round. The sync judges "changed" against its links, so a replay
    writes only what the new settings really require."""
    if old.contact_scope == new.contact_scope and old.mode == new.mode:
        return
    for _ in range(5):
        cursor = services.state.get_cursor(tenant_id, user_id)
        if cursor.etag is None:
            return  # never synced: the first sync looks at everything anyway
        update: dict[str, object] = {"crm_position": 0}
        if old.mode != new.mode:
            update["delta_link"] = None
        try:
            services.state.save_cursor(cursor.model_copy(update=update))
            return
        except ConcurrencyError:
            continue  # a sync just saved its cursor: apply the reset to the fresh one
    raise ConcurrencyError("the sync cursor kept changing while applying new settings")


def save_settings(services: Services, request: WebRequest) -> WebResponse:
    caller, form = _form_caller(services, request)
    connection = _connection(services, caller)
    current = connection.settings if connection else _default_settings(caller)
    try:
        wanted = parse_settings_form(form, current)
    except FormInvalid as exc:
        banner = Banner("error", "Nothing was saved. Please correct the highlighted settings:",
                        [f"{LABELS.get(name, name)}: {message}" for name, message in exc.errors.items()])
        return _settings_page(services, caller, connection, FormState(submitted_values(form), exc.errors),
                              _preview(services, current), [banner], status=400)
    if form.get("action") == "preview":
        return _settings_page(services, caller, connection, FormState(submitted_values(form), {}),
                              _preview(services, wanted, unsaved=True), [])
    saved = _save_settings(services, caller, wanted)
    _reevaluate(services, caller.tenant_id, caller.user_id, current, wanted)
    if saved.status is ConnectionStatus.CONNECTED:
        if wanted.tasks_enabled != current.tasks_enabled or wanted.task_target != current.task_target:
            _resubscribe(services, saved)
        jobs.enqueue_sync(services, caller.tenant_id, caller.user_id, "settings")
    return redirect(with_query(SETTINGS_PATH, flash="saved"))


def sync_now(services: Services, request: WebRequest) -> WebResponse:
    caller, _ = _form_caller(services, request)
    connection = _connection(services, caller)
    if connection is None or connection.status is not ConnectionStatus.CONNECTED:
        raise HttpError(409, "Connect to Microsoft first; there is nothing to sync yet.", "Not connected")
    jobs.enqueue_sync(services, caller.tenant_id, caller.user_id, "sync-now")
    return redirect(with_query(SETTINGS_PATH, flash="sync-queued"))


# -- connect (OAuth) -------------------------------------------------------------------------------

def connect(services: Services, request: WebRequest) -> WebResponse:
    caller, _ = _form_caller(services, request)
    connection = _connection(services, caller)
    hint = connection.ms_account if connection is not None else None
    return redirect(services.oauth.start(caller, login_hint=hint))


def oauth_callback(services: Services, request: WebRequest) -> WebResponse:
    """Microsoft's answer (form_post, or a query on GET). Anonymous by design: the session cookie does
    not come along on a cross-site POST, so the answer is parked and the browser sent on to finish."""
    answer = request.form() if request.method == "POST" else dict(request.params)
    try:
        state = services.oauth.receive(answer)
    except AuthError as exc:
        raise HttpError(400, str(exc), "The Microsoft sign-in could not be completed") from None
    return redirect(f"/api/oauth/finish?state={quote(state, safe='')}")


def _resubscribe(services: Services, connection: Connection) -> None:
    """Bring the user's subscriptions in line with their settings; what fails is retried later."""
    session = services.graph_session_for(connection.tenant_id, connection.user_id)
    try:
        subscribe_user(services, session, connection.settings)
    except SyncError as exc:
        log.warning("subscriptions of %s not set up (%s)", connection.user_id, type(exc).__name__,
                    extra={"event": "subscribe_failed", "tenant": connection.tenant_id, "user": connection.user_id, "error": type(exc).__name__})
    finally:
        session.close()


def oauth_finish(services: Services, request: WebRequest) -> WebResponse:
    caller = _paid_caller(services, request)
    try:
        finished = services.oauth.finish(caller, request.params.get("state", ""))
    except AuthError as exc:
        raise HttpError(400, str(exc), "The Microsoft sign-in could not be completed") from None
    except OAuthError as exc:
        return message_page(400, "Not connected", str(exc),
                            link=Link(SETTINGS_PATH, "Back to the integration settings"))
    # Webhooks make edits in Outlook reach the CRM within seconds; a failure here is retried by the timer.
    _resubscribe(services, finished.connection)
    jobs.enqueue_sync(services, caller.tenant_id, caller.user_id, "connected")
    log.info("connected %s", caller.user_id, extra={"event": "connected", "tenant": caller.tenant_id, "user": caller.user_id})
    return redirect(with_query(SETTINGS_PATH, flash="connected"))


# -- remove integration ----------------------------------------------------------------------------

def disconnect_page(services: Services, request: WebRequest) -> WebResponse:
    caller = _paid_caller(services, request)
    connection = _connection(services, caller)
    if connection is None or connection.status is ConnectionStatus.NOT_CONNECTED:
        return redirect(SETTINGS_PATH)
    body = render("disconnect.html", title="Remove integration", banners=[], csrf=csrf_for(services, caller),
                  account=connection.ms_account, items=what_will_be_deleted(connection.settings))
    return html(body)


def disconnect(services: Services, request: WebRequest) -> WebResponse:
    caller, _ = _form_caller(services, request)
    try:
        report = disconnect_user(services, caller.tenant_id, caller.user_id)
    except SyncRunning as exc:
        raise HttpError(409, f"Nothing was removed: {exc}.", "A sync is running") from None
    return redirect(with_query(SETTINGS_PATH, flash="disconnected", left=",".join(report.left)))


def by_method(**handlers: Handler) -> Handler:
    """One route, a handler per method (the route itself restricts which methods reach us)."""

    def dispatch(services: Services, request: WebRequest) -> WebResponse:
        handler = handlers.get(request.method.upper())
        if handler is None:
            raise HttpError(405, "This page does not accept that kind of request.")
        return handler(services, request)

    return dispatch


settings_route = by_method(GET=settings_page, POST=save_settings)
oauth_callback_route = by_method(GET=oauth_callback, POST=oauth_callback)
disconnect_route = by_method(GET=disconnect_page, POST=disconnect)
