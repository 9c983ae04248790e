"""Route templates, host.json and local.settings.json parsing: pure functions, no servers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from devhost.hostjson import HostJsonError, load_host_json, parse_timespan
from devhost.routing import RouteError, RouteTemplate
from devhost.settings_file import SettingsFileError, apply_to_environ, load_local_settings, resolve_references

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("template", "path", "expected"), [
    ("users/{id}", "/users/42", {"id": "42"}),
    ("users/{id}", "/USERS/abc/", {"id": "abc"}),
    ("users/{id:int}", "/users/-7", {"id": "-7"}),
    ("users/{id:int}", "/users/abc", None),
    ("users/{id:int}", "/users/99999999999", None),
    ("users/{id:long:min(10)}", "/users/99999999999", {"id": "99999999999"}),
    ("users/{id:int:min(10)}", "/users/9", None),
    ("users/{id:guid}", "/users/0f8fad5b-d9cb-469f-a165-70867728950e", {"id": "0f8fad5b-d9cb-469f-a165-70867728950e"}),
    ("flags/{on:bool}", "/flags/True", {"on": "True"}),
    ("codes/{c:length(2,3)}", "/codes/abc", {"c": "abc"}),
    ("codes/{c:alpha:maxlength(2)}", "/codes/abc", None),
    ("files/{*rest}", "/files/a/b%20c/d.txt", {"rest": "a/b c/d.txt"}),
    ("files/{*rest}", "/files", {}),
    ("files/{**rest}", "/files/x", {"rest": "x"}),
    ("items/{id?}", "/items", {}),
    ("items/{page=1}", "/items", {"page": "1"}),
    ("items/{id}", "/items/a%2Fb", {"id": "a/b"}),
    ("items/{id}", "/items/1/extra", None),
    ("", "/", {}),
])
def test_route_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate.parse(template).match(path) == expected


def test_route_regex_constraint_keeps_colons_inside_parentheses() -> None:
    route = RouteTemplate.parse("codes/{c:regex(^[a-z]+:[0-9]$)}")
    assert route.match("/codes/ab:1") == {"c": "ab:1"}
    assert route.match("/codes/ab-1") is None


def test_route_precedence_literal_before_constrained_before_plain_before_catch_all() -> None:
    routes = [RouteTemplate.parse(t) for t in ("users/{*rest}", "users/{name}", "users/{id:int}", "users/me")]
    ordered = sorted(routes, key=lambda r: r.precedence)
    assert [r.template for r in ordered] == ["users/me", "users/{id:int}", "users/{name}", "users/{*rest}"]


@pytest.mark.parametrize(("template", "problem"), [
    ("files/{*rest}/more", "catch-all parameter must be the last segment"),
    ("a/{x}.{y}", "mixes text and parameters"),
    ("a/{x:nosuch}", "constraint 'nosuch' is not supported"),
    ("a/{x}/{X}", "used twice"),
    ("a/{x:min(a)}", "needs 1 whole number"),
])
def test_unservable_routes_are_refused(template: str, problem: str) -> None:
    with pytest.raises(RouteError) as info:
        RouteTemplate.parse(template)
    assert problem in str(info.value)


def test_repository_host_json_is_read() -> None:
    config = load_host_json(ROOT / "host.json")
    assert config.route_prefix == "api"
    assert config.queues.max_dequeue_count == 5
    assert config.queues.visibility_timeout == 30.0
    assert config.queues.batch_size == 16
    assert config.queues.refill_threshold == 8
    assert config.queues.message_encoding == "base64"


def test_host_json_defaults_and_overrides(tmp_path: Path) -> None:
    assert load_host_json(tmp_path / "missing.json").queues.visibility_timeout == 0.0
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"extensions": {"http": {"routePrefix": ""}, "queues": {
        "messageEncoding": "None", "newBatchThreshold": 0, "maxPollingInterval": 2500}}}))
    config = load_host_json(path)
    assert config.route_prefix == ""
    assert config.queues.message_encoding == "none"
    assert config.queues.refill_threshold == 0
    assert config.queues.max_polling_interval == 2.5


@pytest.mark.parametrize(("text", "seconds"), [("00:00:30", 30.0), ("01:02:03", 3723.0), ("1.00:00:00", 86400.0),
                                              ("00:00:00.5", 0.5)])
def test_timespans(text: str, seconds: float) -> None:
    assert parse_timespan(text, "x") == seconds


def test_bad_host_json_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"extensions": {"queues": {"batchSize": 100}}}))
    with pytest.raises(HostJsonError, match="batchSize must be a whole number 1-32"):
        load_host_json(path)
    path.write_text(json.dumps({"extensions": {"queues": {"visibilityTimeout": "30s"}}}))
    with pytest.raises(HostJsonError, match="visibilityTimeout must be a TimeSpan"):
        load_host_json(path)


def test_local_settings_values_and_port(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "1", "FLAG": True, "N": 3},
                                "Host": {"LocalHttpPort": 7090}}))
    settings = load_local_settings(path)
    assert settings.values == {"A": "1", "FLAG": "true", "N": "3"}
    assert settings.local_http_port == 7090
    environ = {"A": "from-env"}
    assert apply_to_environ(settings.values, environ) == ["FLAG", "N"]
    assert environ == {"A": "from-env", "FLAG": "true", "N": "3"}


@pytest.mark.parametrize(("document", "problem"), [
    ("{not json", "is not valid JSON"),
    (json.dumps({"IsEncrypted": True, "Values": {}}), "is encrypted"),
    (json.dumps({"Values": {"A": {"nested": 1}}}), "Values.A must be a string"),
    (json.dumps({"Values": {}, "Host": {"LocalHttpPort": "x"}}), "LocalHttpPort must be a port number"),
])
def test_bad_local_settings_are_one_line(tmp_path: Path, document: str, problem: str) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(document)
    with pytest.raises(SettingsFileError) as info:
        load_local_settings(path)
    assert problem in str(info.value)
    assert "\n" not in str(info.value)


def test_percent_references_resolve_from_settings() -> None:
    assert resolve_references("%Q%-in", {"Q": "jobs"}) == "jobs-in"
    assert resolve_references("0 */5 * * * *", {}) == "0 */5 * * * *"
    with pytest.raises(SettingsFileError, match="app setting MISSING"):
        resolve_references("%MISSING%", {})


def test_catalog_reads_only_app_metadata_and_reports_functions_in_error() -> None:
    import azure.functions as func

    from devhost.catalog import load_catalog

    bp = func.Blueprint()

    @bp.route(route="open")
    def uses_app_default(req: func.HttpRequest) -> str:
        return "x"

    @bp.timer_trigger(schedule="%NO_SUCH_SCHEDULE%", arg_name="timer")
    def unset_schedule(timer: func.TimerRequest) -> None:
        return None

    @bp.timer_trigger(schedule="0 */5 * * *", arg_name="timer")
    def five_fields(timer: func.TimerRequest) -> None:
        return None

    @bp.queue_trigger(arg_name="msg", queue_name="%JOBS%", connection="OtherStorage")
    def other_connection(msg: func.QueueMessage) -> None:
        return None

    @bp.queue_trigger(arg_name="msg", queue_name="jobs", connection="MissingStorage")
    def missing_connection(msg: func.QueueMessage) -> None:
        return None

    @bp.queue_trigger(arg_name="msg", queue_name="jobs", connection="")
    @bp.queue_output(arg_name="out", queue_name="next", connection="")
    def with_output(msg: func.QueueMessage, out: func.Out[str]) -> None:
        return None

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ADMIN)
    app.register_functions(bp)
    catalog = load_catalog(app, {"JOBS": "Jobs-Queue", "AzureWebJobsOtherStorage": "conn-a",
                                 "AzureWebJobsStorage": "conn-default"})
    (http,) = catalog.http
    assert (http.name, http.auth_level, http.methods) == ("uses_app_default", "admin", None)
    (queue,) = catalog.queues
    # Queue names are lowercased; the connection setting may carry the AzureWebJobs prefix.
    assert (queue.queue_name, queue.connection_string) == ("jobs-queue", "conn-a")
    assert catalog.timers == []
    assert catalog.errors == {
        "unset_schedule": "app setting NO_SUCH_SCHEDULE (referenced as %NO_SUCH_SCHEDULE%) is not set",
        "five_fields": "'0 */5 * * *' must have 6 fields: second minute hour day month day-of-week (got 5)",
        "missing_connection": "connection setting MissingStorage is not set",
        "with_output": "devhost does not support its queue binding(s)",
    }
