"""The control API under /_emulator/: what tests, benchmarks and `make run` use to set the scene and look
behind it. JSON in, JSON out; errors are `{"error": "..."}` with 400/404/409.

  POST   /users {displayName, userPrincipalName[, password]}   → {id, userPrincipalName, displayName, password}
  GET    /users
  POST   /users/{id}/token [{client_id, scopes}]              → {access_token, expires_in, token_type}
  POST   /users/{id}/revoke                                   refresh tokens issued so far fail (invalid_grant)
  POST   /users/{id}/expire-delta-tokens                      every delta/skip token so far → 410
  POST   /users/{id}/contacts/{contactId}/move {destinationId} → the moved contact (new regular id)
  POST   /apps {client_id, client_secret, redirect_uris}
  GET    /requests[?since=seq]   DELETE /requests
  POST   /clock {advance_seconds}                             → {now}
  POST   /reset                                               mailboxes, users, tokens, log, faults, throttling
  GET    /state/{userId}                                      a JSON dump of the mailbox
  GET|PUT /throttle {limit, window_seconds, max_concurrency, service_delay_ms}
  GET|POST|DELETE /faults                                     see faults.py
  GET|PUT /delta {retention_seconds, default_page_size}
"""
from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from m365_emulator.kernel.core import User
from m365_emulator.kernel.emulator import Emulator
from m365_emulator.kernel.graph import GraphError, iso
from m365_emulator.resources import contacts


CONTROL_CLIENT_ID = "emulator-control"
DEFAULT_SCOPES = ("Contacts.ReadWrite", "Tasks.ReadWrite", "Calendars.ReadWrite", "User.Read", "offline_access")


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _json(request: Request, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ControlError(400, "a JSON object body is required")
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ControlError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


def _user(emu: Emulator, key: str) -> User:
    with emu.core.lock:
        user = emu.core.users.get(key) or emu.core.user_by_upn(key)
    if user is None:
        raise ControlError(404, f"no user {key}")
    return user


def _user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "userPrincipalName": user.user_principal_name, "displayName": user.display_name,
            "password": user.password}


def _number(body: dict[str, Any], name: str, kind: type = float) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ControlError(400, f"{name} must be a non-negative number")
    return kind(value)


def routes(emu: Emulator, persister: Any | None = None) -> list[Route]:
    def endpoint(func: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            try:
                result = await func(request)
            except ControlError as err:
                return JSONResponse({"error": err.message}, err.status)
            except GraphError as err:
                return JSONResponse({"error": err.message, "code": err.code}, err.status)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)
        return wrapped

    async def create_user(request: Request) -> Response:
        body = await _json(request)
        name, upn, password = body.get("displayName"), body.get("userPrincipalName"), body.get("password")
        if not isinstance(name, str) or not isinstance(upn, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+", upn):
            raise ControlError(400, "displayName and userPrincipalName (name@domain) are required")
        if password is not None and not isinstance(password, str):
            raise ControlError(400, "password must be a string")
        try:
            user = emu.core.add_user(name, upn, password)
        except ValueError as exc:
            raise ControlError(409, str(exc)) from None
        contacts.ensure_default_folder(emu, user.id)
        emu.touch()
        return JSONResponse(_user_json(user), 201)

    async def list_users(request: Request) -> Any:
        with emu.core.lock:
            return {"value": [_user_json(u) for u in emu.core.users.values()]}

    async def token(request: Request) -> Any:
        user = _user(emu, request.path_params["user"])
        body = await _json(request, required=False)
        client_id = body.get("client_id", CONTROL_CLIENT_ID)
        scopes = body.get("scopes", list(DEFAULT_SCOPES))
        if not isinstance(client_id, str) or not isinstance(scopes, list):
            raise ControlError(400, "client_id must be a string and scopes a list")
        issued = emu.core.issue_access_token(user.id, client_id, tuple(map(str, scopes)))
        emu.touch()
        return {"access_token": issued.token, "token_type": "Bearer",
                "expires_in": int(issued.expires_at - emu.core.clock.now())}

    async def revoke(request: Request) -> Any:
        user = _user(emu, request.path_params["user"])
        emu.core.revoke(user.id)
        emu.touch()
        return {"id": user.id, "revoked": True}

    async def expire_delta(request: Request) -> Any:
        user = _user(emu, request.path_params["user"])
        emu.store.expire_delta_tokens(user.id)
        return {"id": user.id, "deltaTokensExpired": True}

    async def move(request: Request) -> Any:
        user = _user(emu, request.path_params["user"])
        body = await _json(request)
        destination = body.get("destinationId")
        if not isinstance(destination, str):
            raise ControlError(400, "destinationId is required")
        item = contacts.move_contact(emu, user.id, request.path_params["contact"], destination)
        return {**contacts.contact_json(item, destination, False), "immutableId": item.immutable_id}

    async def create_app(request: Request) -> Response:
        body = await _json(request)
        client_id, secret, uris = body.get("client_id"), body.get("client_secret"), body.get("redirect_uris", [])
        if not isinstance(client_id, str) or not isinstance(secret, str) or not isinstance(uris, list):
            raise ControlError(400, "client_id, client_secret (strings) and redirect_uris (list) are required")
        app = emu.core.register_app(client_id, secret, tuple(map(str, uris)))
        emu.touch()
        return JSONResponse({"client_id": app.client_id, "redirect_uris": list(app.redirect_uris)}, 201)

    async def requests_log(request: Request) -> Any:
        since = request.query_params.get("since", "0")
        if not since.lstrip("-").isdigit():
            raise ControlError(400, "since must be an integer")
        entries = emu.log.since(int(since))
        return {"value": entries, "lastSeq": emu.log.seq}

    async def clear_log(request: Request) -> Any:
        emu.log.clear()
        return {"lastSeq": emu.log.seq}

    async def clock(request: Request) -> Any:
        body = await _json(request)
        seconds = body.get("advance_seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ControlError(400, "advance_seconds must be a number")
        emu.core.clock.advance(float(seconds))
        emu.touch()
        return {"now": iso(emu.core.clock.now()), "offset_seconds": emu.core.clock.offset}

    async def reset(request: Request) -> Any:
        emu.reset()
        return {"reset": True}

    async def state(request: Request) -> Any:
        user = _user(emu, request.path_params["user"])
        out: dict[str, Any] = {"user": _user_json(user), "deltaEpoch": emu.store.mailbox(user.id).delta_epoch}
        for part in emu.state_parts:
            out.update(part(emu, user.id))
        return out

    async def throttle(request: Request) -> Any:
        if request.method == "PUT":
            body = await _json(request)
            unknown = set(body) - {"limit", "window_seconds", "max_concurrency", "service_delay_ms"}
            if unknown:
                raise ControlError(400, f"unknown throttle settings: {sorted(unknown)}")
            limit, concurrency = _number(body, "limit", int), _number(body, "max_concurrency", int)
            if (limit is not None and limit < 1) or (concurrency is not None and concurrency < 1):
                raise ControlError(400, "limit and max_concurrency must be at least 1")
            emu.throttle.configure(limit, _number(body, "window_seconds"), concurrency,
                                   _number(body, "service_delay_ms", int))
            emu.throttle.reset()
        return emu.throttle.config.as_json()

    async def faults(request: Request) -> Any:
        if request.method == "DELETE":
            emu.faults.clear()
            return {"value": []}
        if request.method == "POST":
            body = await _json(request)
            try:
                rule = emu.faults.add(body)
            except (ValueError, TypeError, re.error) as exc:
                raise ControlError(400, str(exc)) from None
            return JSONResponse(rule.as_json(), 201)
        return {"value": [r.as_json() for r in emu.faults.rules]}

    async def delta_settings(request: Request) -> Any:
        if request.method == "PUT":
            body = await _json(request)
            retention, page = _number(body, "retention_seconds"), _number(body, "default_page_size", int)
            if retention is not None:
                emu.delta.retention_seconds = retention
            if page is not None and page >= 1:
                emu.delta.default_page_size = page
        return {"retention_seconds": emu.delta.retention_seconds, "default_page_size": emu.delta.default_page_size}

    async def info(request: Request) -> Any:
        return {"tenant_id": emu.core.tenant_id, "now": iso(emu.core.clock.now()),
                "state_file": str(persister.path) if persister is not None else None}

    return [
        Route("/", endpoint(info), methods=["GET"]),
        Route("/users", endpoint(create_user), methods=["POST"]),
        Route("/users", endpoint(list_users), methods=["GET"]),
        Route("/users/{user}/token", endpoint(token), methods=["POST"]),
        Route("/users/{user}/revoke", endpoint(revoke), methods=["POST"]),
        Route("/users/{user}/expire-delta-tokens", endpoint(expire_delta), methods=["POST"]),
        Route("/users/{user}/contacts/{contact}/move", endpoint(move), methods=["POST"]),
        Route("/apps", endpoint(create_app), methods=["POST"]),
        Route("/requests", endpoint(requests_log), methods=["GET"]),
        Route("/requests", endpoint(clear_log), methods=["DELETE"]),
        Route("/clock", endpoint(clock), methods=["POST"]),
        Route("/reset", endpoint(reset), methods=["POST"]),
        Route("/state/{user}", endpoint(state), methods=["GET"]),
        Route("/throttle", endpoint(throttle), methods=["GET", "PUT"]),
        Route("/faults", endpoint(faults), methods=["GET", "POST", "DELETE"]),
        Route("/delta", endpoint(delta_settings), methods=["GET", "PUT"]),
    ]
