"""Change-notification subscriptions against a private emulator process (its clock is advanced here) and a real
local webhook receiver (http.server on a free port): the validation handshake, notifications after contact, event
and task changes, retries, expiry, renewal, lifecycle events. Subscriptions are created with the unmodified
msgraph-sdk where it has the call; raw httpx shows status codes and error bodies."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from m365_emulator.server import ControlClient, EmulatorProcess
from tests.emulator.conftest import GraphHttp, StaticCredential
from tests.graph_docs import GRAPH_DOCS

FIXTURES = GRAPH_DOCS


# ------------------------------------------------------------------------------------------- receiver

@dataclass
class Hook:
    """What one receiver path does: how it answers the handshake and which statuses notifications get."""

    validation: str = "echo"  # echo | wrong | 500 | slow
    statuses: deque[int] = field(default_factory=deque)  # popped per notification POST; then 202
    delays: deque[float] = field(default_factory=deque)  # seconds to stall before answering, per POST
    validations: list[str] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)  # every notification POST body
    answered: list[int] = field(default_factory=list)

    def notifications(self) -> list[dict[str, Any]]:
        return [n for body in self.posts for n in body["value"]]


class Receiver:
    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with receiver.lock:
                    hook = receiver.hooks.setdefault(parts.path, Hook())
                token = parse_qs(parts.query).get("validationToken")
                if token is not None:
                    hook.validations.append(token[0])
                    if hook.validation == "slow":
                        time.sleep(1.0)
                    status, text = {"echo": (200, token[0]), "wrong": (200, "not the token"),
                                    "500": (500, "")}.get(hook.validation, (200, token[0]))
                    self._answer(status, text.encode(), "text/plain")
                    return
                body = json.loads(raw)
                with receiver.lock:
                    hook.posts.append(body)
                    status = hook.statuses.popleft() if hook.statuses else 202
                    delay = hook.delays.popleft() if hook.delays else 0.0
                    hook.answered.append(status)
                time.sleep(delay)
                self._answer(status, b"", "text/plain")

            def _answer(self, status: int, payload: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hook(self, path: str, **settings: Any) -> tuple[str, Hook]:
        with self.lock:
            hook = self.hooks[path] = Hook(**settings)
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}", hook

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------- fixtures

@dataclass
class Env:
    process: EmulatorProcess
    control: ControlClient
    http: httpx.Client
    receiver: Receiver

    def user(self) -> tuple[dict[str, Any], GraphHttp]:
        user, token = self.control.new_user_with_token()
        return user, GraphHttp(self.process.graph, token, self.http)

    def now(self) -> dt.datetime:
        stamp = self.control._call("POST", "/clock", {"advance_seconds": 0})["now"]
        return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)

    def expiry(self, minutes: float) -> str:
        return (self.now() + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")

    def settings(self, **values: Any) -> dict[str, Any]:
        return dict(self.control._call("POST", "/notifications", values))

    def log(self) -> list[dict[str, Any]]:
        return list(self.control._call("GET", "/notifications/log")["value"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    receiver = Receiver()
    process = EmulatorProcess(workdir=tmp_path_factory.mktemp("subscriptions-emulator"))
    with process, httpx.Client(timeout=30, trust_env=False) as http:
        control = process.control_client()
        try:
            yield Env(process, control, http, receiver)
        finally:
            control.close()
            receiver.close()


@pytest.fixture(autouse=True)
def quick_retries(env: Env) -> None:
    env.settings(retry_base_ms=50, retry_max_ms=200, max_attempts=5, batch_window_ms=30, duplicate_probability=0,
                 delay_ms=0, reauthorize_before_seconds=3600, validation_timeout_seconds=10,
                 delivery_timeout_seconds=3, max_per_mailbox=1000)


def subscribe(graph: GraphHttp, env: Env, resource: str, url: str, minutes: float = 600, **extra: Any) -> httpx.Response:
    body = {"changeType": "created,updated,deleted", "notificationUrl": url, "resource": resource,
            "expirationDateTime": env.expiry(minutes), "clientState": "s3cret", **extra}
    return graph.post("/subscriptions", body, headers={"Prefer": 'IdType="ImmutableId"'})


# ---------------------------------------------------------------------------------------------- tests

def test_sdk_handshake_creates_and_manages_a_subscription(env: Env, aio: Any) -> None:
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.subscription import Subscription

    user, graph = env.user()
    url, hook = env.receiver.hook("/sdk")
    adapter = GraphRequestAdapter(AzureIdentityAuthenticationProvider(StaticCredential(graph.token),
                                                                      scopes=["https://graph.microsoft.com/.default"]))
    adapter.base_url = env.process.graph
    client = GraphServiceClient(request_adapter=adapter)
    expires = env.now() + dt.timedelta(days=2)

    async def scenario() -> None:
        created = await client.subscriptions.post(Subscription(
            change_type="created,updated,deleted", notification_url=url, resource="me/contacts",
            expiration_date_time=expires, client_state="s3cret", latest_supported_tls_version="v1_2"))
        assert created.id and created.resource == "me/contacts" and created.client_state == "s3cret"
        assert created.creator_id == user["id"] and created.application_id
        assert abs((created.expiration_date_time - expires).total_seconds()) < 1
        listed = await client.subscriptions.get()
        assert [s.id for s in listed.value] == [created.id]
        renewed = await client.subscriptions.by_subscription_id(created.id).patch(
            Subscription(expiration_date_time=expires + dt.timedelta(days=1)))
        assert renewed.expiration_date_time > created.expiration_date_time
        await client.subscriptions.by_subscription_id(created.id).delete()
        assert (await client.subscriptions.get()).value == []

    aio(scenario())
    [token] = hook.validations
    assert token.startswith("Validation: ")  # decoded: spaces and colons arrive intact


def test_published_request_is_accepted_and_answered_in_shape(env: Env) -> None:
    _, graph = env.user()
    url, _ = env.receiver.hook("/shape")
    request = json.loads((FIXTURES / "webhooks-subscription.request.json").read_text())
    folder = graph.ok("POST", "/me/contactFolders", {"displayName": "CRM"}, status=201)["id"]
    request.update(notificationUrl=url, lifecycleNotificationUrl=url, expirationDateTime=env.expiry(60),
                   resource=f"/me/contactFolders('{folder}')/contacts")
    created = graph.ok("POST", "/subscriptions", request, status=201)
    for name in ("subscription-post.response.json", "subscription-update.response.json",
                 "outlook-subscription.response-1.json"):
        assert set(json.loads((FIXTURES / name).read_text())) - {"@odata.context"} <= set(created), name
    assert created["changeType"] == "created,updated" and created["lifecycleNotificationUrl"] == url
    assert created["latestSupportedTlsVersion"] == "v1_2" and created["notificationContentType"] == "application/json"
    renewed = graph.ok("PATCH", f"/subscriptions/{created['id']}", {"expirationDateTime": env.expiry(120)})
    assert renewed["expirationDateTime"] > created["expirationDateTime"]


def test_handshake_failures_refuse_the_subscription(env: Env) -> None:
    _, graph = env.user()
    good, _ = env.receiver.hook("/good")
    for mode, message in (("wrong", "Response must exactly match validationToken"), ("500", "must respond with 200 OK")):
        bad, hook = env.receiver.hook(f"/bad-{mode}", validation=mode)
        answer = subscribe(graph, env, "me/events", bad)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "InvalidRequest" and error["message"].startswith("Subscription validation request failed.")
        assert message in error["message"] and len(hook.validations) == 1
        lifecycle = subscribe(graph, env, "me/events", good, lifecycleNotificationUrl=bad)
        assert lifecycle.status_code == 400
    closed = subscribe(graph, env, "me/events", "http://127.0.0.1:9/nobody-listens")
    assert closed.status_code == 400
    env.settings(validation_timeout_seconds=0.3)  # Graph waits 10 s; the setting keeps this test short
    slow, _ = env.receiver.hook("/slow", validation="slow")
    timed_out = subscribe(graph, env, "me/events", slow)
    assert timed_out.status_code == 400
    assert timed_out.json()["error"]["message"] == "Subscription validation request timeout."
    assert graph.ok("GET", "/subscriptions")["value"] == []


def test_refusals_for_lifetime_resource_and_fields(env: Env) -> None:
    user, graph = env.user()
    url, _ = env.receiver.hook("/refusals")
    too_long = subscribe(graph, env, "me/contacts", url, minutes=10_100)
    assert too_long.status_code == 400
    assert too_long.json()["error"] == {**too_long.json()["error"], "code": "ExtensionError",
                                        "message": "Subscription expiration can only be 10070 minutes in the future."}
    lists = graph.ok("GET", "/me/todo/lists")["value"]
    todo_too_long = subscribe(graph, env, f"me/todo/lists/{lists[0]['id']}/tasks", url, minutes=4300)
    assert todo_too_long.status_code == 400 and "4230 minutes" in todo_too_long.json()["error"]["message"]
    assert subscribe(graph, env, "me/contacts", url, minutes=-5).status_code == 400
    assert subscribe(graph, env, "me/messages", url).status_code == 400
    assert subscribe(graph, env, "me/contactFolders/nope/contacts", url).status_code == 404
    assert subscribe(graph, env, "me/contacts", url, changeType="moved").status_code == 400
    assert subscribe(graph, env, "me/contacts", url, clientState="x" * 129).status_code == 400
    assert subscribe(graph, env, "me/contacts", "http://example.com/hook").status_code == 400  # https required
    other = env.control.create_user()
    assert subscribe(graph, env, f"users/{other['id']}/contacts", url).status_code == 403
    short = subscribe(graph, env, "me/contacts", url, minutes=5)
    assert short.status_code == 201  # raised to Graph's 45-minute minimum
    granted = dt.datetime.strptime(short.json()["expirationDateTime"][:19], "%Y-%m-%dT%H:%M:%S")
    assert granted.replace(tzinfo=dt.timezone.utc) - env.now() > dt.timedelta(minutes=44)
    renew = graph.patch(f"/subscriptions/{short.json()['id']}", {"expirationDateTime": env.expiry(20_000)})
    assert renew.status_code == 400
    assert graph.patch(f"/subscriptions/{short.json()['id']}", {"resource": "me/events"}).status_code == 400
    assert graph.get("/subscriptions/00000000-0000-0000-0000-000000000000").status_code == 404


def test_contact_changes_are_notified_with_client_state_and_ids(env: Env) -> None:
    user, graph = env.user()
    url, hook = env.receiver.hook("/contacts")
    folder = graph.ok("POST", "/me/contactFolders", {"displayName": "CRM"}, status=201)["id"]
    sub = subscribe(graph, env, f"/users/{user['id']}/contactFolders/{folder}/contacts", url).json()
    prefer = {"Prefer": 'IdType="ImmutableId"'}
    contact = graph.ok("POST", f"/me/contactFolders/{folder}/contacts", {"givenName": "Ada"}, status=201, headers=prefer)
    graph.ok("PATCH", f"/me/contacts/{contact['id']}", {"surname": "Lovelace"})
    graph.delete(f"/me/contacts/{contact['id']}")
    graph.ok("POST", "/me/contacts", {"givenName": "Elsewhere"}, status=201)  # another folder: not watched
    notes = wait_for(lambda: len(hook.notifications()) >= 3 and hook.notifications())
    time.sleep(0.2)
    assert [n["changeType"] for n in hook.notifications()] == ["created", "updated", "deleted"]
    for note in notes:
        assert note["subscriptionId"] == sub["id"] and note["clientState"] == "s3cret"
        assert note["tenantId"] == env.process.tenant_id
        assert note["resourceData"]["id"] == contact["id"]  # the immutable id the subscription asked for
        assert note["resourceData"]["@odata.type"] == "#Microsoft.Graph.Contact"
        assert note["resource"] == f"Users/{user['id']}/Contacts/{contact['id']}"
        assert note["subscriptionExpirationDateTime"] == sub["expirationDateTime"]
    assert notes[0]["resourceData"]["@odata.etag"].startswith('W/"')


def test_moves_notify_deleted_in_one_folder_and_created_in_the_other(env: Env) -> None:
    user, graph = env.user()
    url, hook = env.receiver.hook("/moves")
    source = graph.ok("POST", "/me/contactFolders", {"displayName": "Source"}, status=201)["id"]
    target = graph.ok("POST", "/me/contactFolders", {"displayName": "Target"}, status=201)["id"]
    body = {"changeType": "created,deleted", "notificationUrl": url, "expirationDateTime": env.expiry(600)}
    graph.ok("POST", "/subscriptions", {**body, "resource": f"me/contactFolders/{source}/contacts"}, status=201)
    graph.ok("POST", "/subscriptions", {**body, "resource": f"me/contactFolders/{target}/contacts"}, status=201)
    contact = graph.ok("POST", f"/me/contactFolders/{source}/contacts", {"givenName": "Mover"}, status=201)
    moved = env.control.move_contact(user["id"], contact["id"], target)
    wait_for(lambda: len(hook.notifications()) >= 3)
    created, deleted, arrived = hook.notifications()
    assert (created["changeType"], created["resourceData"]["id"]) == ("created", contact["id"])
    assert (deleted["changeType"], deleted["resourceData"]["id"]) == ("deleted", contact["id"])  # the old id
    assert (arrived["changeType"], arrived["resourceData"]["id"]) == ("created", moved["id"])
    assert moved["id"] != contact["id"] and deleted["clientState"] is None


def test_event_and_task_changes_are_notified(env: Env) -> None:
    _, graph = env.user()
    events_url, events_hook = env.receiver.hook("/events")
    tasks_url, tasks_hook = env.receiver.hook("/tasks")
    list_id = graph.ok("POST", "/me/todo/lists", {"displayName": "CRM"}, status=201)["id"]
    subscribe(graph, env, "me/events", events_url, changeType="created")
    subscribe(graph, env, f"me/todo/lists/{list_id}/tasks", tasks_url)
    created = graph.ok("POST", "/me/events", {"subject": "Call", "start": {"dateTime": "2026-05-01T10:00:00", "timeZone": "UTC"},
                                              "end": {"dateTime": "2026-05-01T11:00:00", "timeZone": "UTC"}}, status=201)
    graph.ok("PATCH", f"/me/events/{created['id']}", {"subject": "Call (moved)"})  # not subscribed to updates
    task = graph.ok("POST", f"/me/todo/lists/{list_id}/tasks", {"title": "Follow up"}, status=201,
                    headers={"Prefer": 'IdType="ImmutableId"'})
    graph.ok("PATCH", f"/me/todo/lists/{list_id}/tasks/{task['id']}", {"status": "completed"})
    wait_for(lambda: len(tasks_hook.notifications()) >= 2 and events_hook.notifications())
    time.sleep(0.2)
    [note] = events_hook.notifications()
    assert note["changeType"] == "created" and note["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"
    assert [n["changeType"] for n in tasks_hook.notifications()] == ["created", "updated"]
    assert tasks_hook.notifications()[0]["resourceData"]["id"] == task["id"]


def test_close_changes_are_batched_and_5xx_is_retried(env: Env) -> None:
    user, graph = env.user()
    url, hook = env.receiver.hook("/retry", statuses=deque([503, 503]))
    sub = subscribe(graph, env, "me/contacts", url).json()
    env.settings(batch_window_ms=200)
    for n in range(3):
        graph.ok("POST", "/me/contacts", {"givenName": f"C{n}"}, status=201)
    wait_for(lambda: hook.answered[-1:] == [202], timeout=5)
    assert hook.answered == [503, 503, 202]
    assert len(hook.posts[-1]["value"]) == 3  # one POST carried the three changes
    entry = wait_for(lambda: [e for e in env.log() if sub["id"] in e["subscriptionIds"] and e["state"] == "delivered"])
    assert [a.get("status") for a in entry[0]["attempts"]] == [503, 503, 202]


def test_slow_answers_time_out_and_are_retried(env: Env) -> None:
    _, graph = env.user()
    url, hook = env.receiver.hook("/slow-answer", delays=deque([0.8]))
    sub = subscribe(graph, env, "me/contacts", url).json()
    env.settings(delivery_timeout_seconds=0.3)  # Graph's is 3 s
    graph.ok("POST", "/me/contacts", {"givenName": "Patient"}, status=201)
    entry = wait_for(lambda: [e for e in env.log() if sub["id"] in e["subscriptionIds"] and e["state"] == "delivered"])
    assert [a.get("error", a.get("status")) for a in entry[0]["attempts"]] == ["timeout", 202]
    assert len(hook.posts) == 2 and hook.posts[0] == hook.posts[1]


def test_mailbox_subscription_limit(env: Env) -> None:
    _, graph = env.user()
    url, _ = env.receiver.hook("/limit")
    env.settings(max_per_mailbox=2)  # Graph's is 1,000 per mailbox, all apps together
    assert [subscribe(graph, env, "me/contacts", url).status_code for _ in range(2)] == [201, 201]
    third = subscribe(graph, env, "me/events", url)
    assert third.status_code == 403 and "maximum number of subscriptions" in third.json()["error"]["message"]
    _, someone_else = env.user()
    assert subscribe(someone_else, env, "me/contacts", url).status_code == 201


def test_undeliverable_notifications_are_dropped_and_reported_missed(env: Env) -> None:
    _, graph = env.user()
    url, hook = env.receiver.hook("/down", statuses=deque([500] * 10))
    life_url, life_hook = env.receiver.hook("/down-life")
    sub = subscribe(graph, env, "me/contacts", url, lifecycleNotificationUrl=life_url).json()
    env.settings(max_attempts=3)
    graph.ok("POST", "/me/contacts", {"givenName": "Lost"}, status=201)
    missed = wait_for(lambda: [n for n in life_hook.notifications() if n["lifecycleEvent"] == "missed"])
    assert missed[0]["subscriptionId"] == sub["id"] and missed[0]["clientState"] == "s3cret"
    assert len(hook.posts) == 3
    dropped = [e for e in env.log() if sub["id"] in e["subscriptionIds"] and e["kind"] == "change"]
    assert [e["state"] for e in dropped] == ["dropped"]


def test_duplicate_and_late_delivery_knobs(env: Env) -> None:
    _, graph = env.user()
    url, hook = env.receiver.hook("/dup")
    subscribe(graph, env, "me/contacts", url)
    env.settings(duplicate_probability=1, delay_ms=300)
    started = time.monotonic()
    graph.ok("POST", "/me/contacts", {"givenName": "Twice"}, status=201)
    wait_for(lambda: len(hook.posts) >= 2)
    assert time.monotonic() - started >= 0.3
    assert hook.posts[0] == hook.posts[1]


def test_lifecycle_events_from_the_control_api(env: Env) -> None:
    _, graph = env.user()
    url, hook = env.receiver.hook("/life-changes")
    life_url, life_hook = env.receiver.hook("/life")
    sub = subscribe(graph, env, "me/events", url, lifecycleNotificationUrl=life_url).json()
    assert len(life_hook.validations) == 1  # the lifecycle URL is validated too
    for event in ("reauthorizationRequired", "missed"):
        answer = env.http.post(f"{env.process.control}/subscriptions/{sub['id']}/lifecycle", json={"event": event})
        assert answer.status_code == 202
    wait_for(lambda: len(life_hook.notifications()) >= 2)
    first = life_hook.notifications()[0]
    published = json.loads((FIXTURES / "lifecycle.reauthorizationRequired.json").read_text())["value"][0]
    assert set(first) == set(published)
    assert [n["lifecycleEvent"] for n in life_hook.notifications()] == ["reauthorizationRequired", "missed"]
    assert first["subscriptionId"] == sub["id"] and first["clientState"] == "s3cret"
    removed = env.http.post(f"{env.process.control}/subscriptions/{sub['id']}/lifecycle",
                            json={"event": "subscriptionRemoved"})
    assert removed.status_code == 202
    wait_for(lambda: life_hook.notifications()[-1]["lifecycleEvent"] == "subscriptionRemoved")
    assert graph.get(f"/subscriptions/{sub['id']}").status_code == 404
    assert env.http.post(f"{env.process.control}/subscriptions/{sub['id']}/lifecycle",
                         json={"event": "missed"}).status_code == 404
    assert hook.posts == []


def test_reauthorization_is_requested_before_expiry(env: Env) -> None:
    _, graph = env.user()
    url, _ = env.receiver.hook("/reauth-changes")
    life_url, life_hook = env.receiver.hook("/reauth")
    sub = subscribe(graph, env, "me/contacts", url, minutes=50, lifecycleNotificationUrl=life_url).json()
    wait_for(lambda: [n for n in life_hook.notifications() if n["lifecycleEvent"] == "reauthorizationRequired"])
    graph.ok("PATCH", f"/subscriptions/{sub['id']}", {"expirationDateTime": env.expiry(3 * 24 * 60)})
    time.sleep(0.5)
    assert len(life_hook.notifications()) == 1  # a renewed subscription is not warned again


def test_expiry_by_the_emulator_clock_stops_delivery(env: Env) -> None:
    """Runs last in this module: it moves the private emulator's clock forward."""
    user, graph = env.user()
    url, hook = env.receiver.hook("/expiring")
    sub = subscribe(graph, env, "me/contacts", url, minutes=60).json()
    graph.ok("POST", "/me/contacts", {"givenName": "Before"}, status=201)
    wait_for(lambda: hook.posts)
    env.control.advance_clock(2 * 3600)
    token = env.control.token(user["id"])  # the old access token expired with the clock too
    graph = GraphHttp(graph.base, token, graph.http)
    wait_for(lambda: graph.get(f"/subscriptions/{sub['id']}").status_code == 404)
    graph.ok("POST", "/me/contacts", {"givenName": "After"}, status=201)
    time.sleep(0.5)
    assert len(hook.notifications()) == 1
    assert graph.ok("GET", "/subscriptions")["value"] == []


def test_subscriptions_survive_a_restart_with_a_state_file(tmp_path: Path, env: Env) -> None:
    url, hook = env.receiver.hook("/restart")
    process = EmulatorProcess(workdir=tmp_path, state_file=tmp_path / "state.json")
    with process:
        control = process.control_client()
        _, token = control.new_user_with_token()
        control.close()
        graph = GraphHttp(process.graph, token, env.http)
        expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        sub = graph.ok("POST", "/subscriptions", {"changeType": "created", "notificationUrl": url, "clientState": "kept",
                                                  "resource": "me/contacts", "expirationDateTime": expires}, status=201)
        process.restart()
        graph = GraphHttp(process.graph, token, env.http)
        assert graph.ok("GET", f"/subscriptions/{sub['id']}")["clientState"] == "kept"
        graph.ok("POST", "/me/contacts", {"givenName": "After restart"}, status=201)
        [note] = wait_for(lambda: hook.notifications())
        assert note["subscriptionId"] == sub["id"] and note["clientState"] == "kept"
