"""/_emulator/ui: a plain HTML page (no JavaScript) to play the Outlook side by hand: each mailbox's contact
folders and contacts, with forms to create, edit, move and delete them. Changes go through the store like
Outlook's own, so they appear in delta and fire change notifications.

Other modules add their part of the page with `emu.ui_sections.append((title, render))`, where
`render(emu, user_id) -> str` returns an HTML fragment (escape with `esc`) and may post forms to their own
routes in `emu.control_routes`. Until a module fills them, the To Do and Calendar sections say so.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from m365_emulator.kernel.emulator import Emulator
from m365_emulator.kernel.graph import GraphError, iso
from m365_emulator.resources import contacts
from m365_emulator.ui.html import back_to, esc, refused, segment


PLACEHOLDER_SECTIONS = ("To Do", "Calendar")
EDIT_FIELDS = (("givenName", "Given name"), ("surname", "Surname"), ("displayName", "Display name"),
               ("email", "Email"), ("mobilePhone", "Mobile"), ("businessPhone", "Business phone"),
               ("companyName", "Company"), ("jobTitle", "Job title"), ("personalNotes", "Notes"))

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .4rem;vertical-align:top}
input[type=text]{width:9rem}form.inline{display:inline}.muted{color:#777;font-size:.85rem}
section{margin:1rem 0 2rem}.folder{margin:1rem 0 1rem 1rem}
"""


def _contact_values(data: dict[str, Any]) -> dict[str, str]:
    emails = data.get("emailAddresses") or []
    phones = data.get("businessPhones") or []
    values = {name: str(data.get(name) or "") for name, _ in EDIT_FIELDS}
    values["email"] = str(emails[0].get("address") or "") if emails else ""
    values["businessPhone"] = phones[0] if phones else ""
    return values


def _fields(values: dict[str, str]) -> str:
    return "".join(f'<label>{esc(label)} <input type="text" name="{name}" value="{esc(values.get(name, ""))}"></label> '
                   for name, label in EDIT_FIELDS)


def render_contacts(emu: Emulator, user_id: str) -> str:
    parts = []
    all_folders = contacts.folders(emu, user_id)
    default = contacts.ensure_default_folder(emu, user_id)
    base = f"/_emulator/ui/users/{segment(user_id)}"
    for folder in all_folders:
        options = "".join(f'<option value="{esc(f.id)}">{esc(f.props.get("displayName"))}</option>'
                          for f in all_folders if f.id != folder.id)
        with emu.store.lock:
            items = sorted(folder.items.values(), key=lambda i: (i.created, i.immutable_id))
        rows = []
        for item in items:
            values = _contact_values(item.data)
            cid = segment(item.immutable_id)
            move = (f'<form class="inline" method="post" action="{base}/contacts/{cid}/move">'
                    f'<select name="destinationId">{options}</select> <button>Move</button></form>') if options else ""
            rows.append(
                f'<tr><td><b>{esc(item.data.get("displayName"))}</b><br><span class="muted">id {esc(item.regular_id)}'
                f'<br>changeKey {esc(item.change_key)}<br>modified {esc(iso(item.last_modified))}</span></td>'
                f'<td><form method="post" action="{base}/contacts/{cid}">{_fields(values)}<button>Save</button></form></td>'
                f'<td>{move}<form class="inline" method="post" action="{base}/contacts/{cid}/delete">'
                f'<button>Delete</button></form></td></tr>')
        table = (f"<table><tr><th>Contact</th><th>Edit</th><th>Move / delete</th></tr>{''.join(rows)}</table>"
                 if rows else '<p class="muted">No contacts.</p>')
        delete = "" if folder.id == default else (
            f'<form class="inline" method="post" action="{base}/folders/{segment(folder.id)}/delete">'
            f'<button>Delete folder</button></form>')
        parts.append(
            f'<div class="folder" id="folder-{esc(folder.id)}"><h4>{esc(folder.props.get("displayName"))} '
            f'<span class="muted">({len(items)}) {esc(folder.id)}</span> {delete}</h4>{table}'
            f'<details><summary>New contact in {esc(folder.props.get("displayName"))}</summary>'
            f'<form method="post" action="{base}/folders/{segment(folder.id)}/contacts">{_fields({})}'
            f'<button>Create</button></form></details></div>')
    parts.append(f'<form method="post" action="{base}/folders"><label>New folder <input type="text" name="displayName">'
                 f'</label> <button>Create folder</button></form>')
    return "".join(parts)


def render_page(emu: Emulator) -> str:
    with emu.core.lock:
        users = sorted(emu.core.users.values(), key=lambda u: u.user_principal_name.lower())
    titles = {title for title, _ in emu.ui_sections}
    body = []
    for user in users:
        sections = [f'<section><h3>Contacts</h3>{render_contacts(emu, user.id)}</section>']
        for title, render in emu.ui_sections:
            sections.append(f'<section><h3>{esc(title)}</h3>{render(emu, user.id)}</section>')
        for title in PLACEHOLDER_SECTIONS:
            if title not in titles:
                sections.append(f'<section><h3>{esc(title)}</h3><p class="muted">Not served by this emulator '
                                f'build yet.</p></section>')
        body.append(f'<article id="user-{esc(user.id)}"><h2>{esc(user.display_name)} '
                    f'<span class="muted">{esc(user.user_principal_name)} · {esc(user.id)}</span></h2>'
                    f'{"".join(sections)}</article>')
    if not users:
        body.append('<p class="muted">No mailboxes yet.</p>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Microsoft 365 emulator</title>'
            f'<style>{STYLE}</style></head><body><h1>Microsoft 365 emulator</h1>'
            f'<p class="muted">Tenant {esc(emu.core.tenant_id)} · emulator time {esc(iso(emu.core.clock.now()))}</p>'
            f'<form method="post" action="/_emulator/ui/users"><label>Display name <input type="text" name="displayName">'
            f'</label> <label>User principal name <input type="text" name="userPrincipalName"></label> '
            f'<button>Create mailbox</button></form>{"".join(body)}</body></html>')


def _contact_patch(form: dict[str, str], current: dict[str, Any]) -> dict[str, Any]:
    """The Graph-shaped changes a form asks for: only fields that differ from the contact's current values."""
    before = _contact_values(current)
    patch: dict[str, Any] = {}
    for name, _ in EDIT_FIELDS:
        if name not in form or form[name].strip() == before.get(name, ""):
            continue
        value = form[name].strip()
        if name == "email":
            others = list(current.get("emailAddresses") or [])[1:]
            patch["emailAddresses"] = ([{"name": value, "address": value}] if value else []) + others
        elif name == "businessPhone":
            others = list(current.get("businessPhones") or [])[1:]
            patch["businessPhones"] = ([value] if value else []) + others
        else:
            patch[name] = value or None
    return patch


def routes(emu: Emulator) -> list[Route]:
    def form_action(func: Callable[[Request, dict[str, str]], Awaitable[str]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            try:
                anchor = await func(request, form)
            except (GraphError, ValueError, KeyError) as err:
                return refused(err)
            return back_to(anchor)
        return wrapped

    def user_id(request: Request) -> str:
        uid = request.path_params["user"]
        if uid not in emu.core.users:
            raise KeyError(f"no user {uid}")
        return uid

    async def page(request: Request) -> Response:
        return HTMLResponse(render_page(emu))

    async def create_user(request: Request, form: dict[str, str]) -> str:
        user = emu.core.add_user(form.get("displayName", "").strip() or "New user",
                                 form.get("userPrincipalName", "").strip())
        contacts.ensure_default_folder(emu, user.id)
        emu.touch()
        return f"user-{user.id}"

    async def create_folder(request: Request, form: dict[str, str]) -> str:
        uid = user_id(request)
        folder = contacts.create_folder(emu, uid, form.get("displayName", ""))
        return f"folder-{folder.id}"

    async def delete_folder(request: Request, form: dict[str, str]) -> str:
        uid = user_id(request)
        contacts.delete_folder(emu, uid, request.path_params["folder"])
        return f"user-{uid}"

    async def create_contact(request: Request, form: dict[str, str]) -> str:
        uid = user_id(request)
        fid = request.path_params["folder"]
        contacts.create_contact(emu, uid, fid, _contact_patch(form, {}))
        return f"folder-{fid}"

    async def edit_contact(request: Request, form: dict[str, str]) -> str:
        uid = user_id(request)
        coll, item = contacts.find_contact(emu, uid, request.path_params["contact"])
        patch = _contact_patch(form, item.data)
        if patch:
            contacts.update_contact(emu, uid, item.immutable_id, patch)
        return f"folder-{coll.id}"

    async def move_contact(request: Request, form: dict[str, str]) -> str:
        uid = user_id(request)
        destination = form.get("destinationId", "")
        contacts.move_contact(emu, uid, request.path_params["contact"], destination)
        return f"folder-{destination}"

    async def delete_contact(request: Request, form: dict[str, str]) -> str:
        uid = user_id(request)
        coll, item = contacts.find_contact(emu, uid, request.path_params["contact"])
        contacts.delete_contact(emu, uid, item.immutable_id)
        return f"folder-{coll.id}"

    return [
        Route("/ui", page, methods=["GET"]),
        Route("/ui/users", form_action(create_user), methods=["POST"]),
        Route("/ui/users/{user}/folders", form_action(create_folder), methods=["POST"]),
        Route("/ui/users/{user}/folders/{folder}/delete", form_action(delete_folder), methods=["POST"]),
        Route("/ui/users/{user}/folders/{folder}/contacts", form_action(create_contact), methods=["POST"]),
        Route("/ui/users/{user}/contacts/{contact}", form_action(edit_contact), methods=["POST"]),
        Route("/ui/users/{user}/contacts/{contact}/move", form_action(move_contact), methods=["POST"]),
        Route("/ui/users/{user}/contacts/{contact}/delete", form_action(delete_contact), methods=["POST"]),
    ]
