from __future__ import annotations

import pytest

from sync_core.domain.errors import SettingsError
from sync_core.settings import load_settings

VALID = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "GRAPH_CLIENT_ID": "client",
    "GRAPH_CLIENT_SECRET": "secret",
    "TOKEN_ENCRYPTION_KEY": "A" * 43 + "=",
    "PUBLIC_BASE_URL": "http://127.0.0.1:7071/",
    "CRM_LAUNCH_SECRET": "x" * 32,
}


def test_valid_settings_load_with_defaults() -> None:
    settings = load_settings(VALID)
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.public_base_url == "http://127.0.0.1:7071"
    assert len(settings.token_key_bytes) == 32
    assert settings.storage_name("links") == "links"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"GRAPH_CLIENT_ID": None}, "Setting GRAPH_CLIENT_ID is missing: expected the application (client) id"),
        ({"TOKEN_ENCRYPTION_KEY": "short"}, "Setting TOKEN_ENCRYPTION_KEY is invalid"),
        ({"PUBLIC_BASE_URL": "ftp://x"}, "Setting PUBLIC_BASE_URL is invalid (Value error, must be an http(s) URL)"),
        ({"CRM_LAUNCH_SECRET": "short"}, "Setting CRM_LAUNCH_SECRET is invalid"),
        ({"AzureWebJobsStorage": None}, "Setting AzureWebJobsStorage is missing"),
        ({"IDENTITY_CA_FILE": "/nonexistent/ca.pem"}, "Setting IDENTITY_CA_FILE is invalid"),
        ({"STORAGE_PREFIX": "Bad_Prefix"}, "Setting STORAGE_PREFIX is invalid"),
        ({"SYNC_RUN_BUDGET_SECONDS": "0"}, "Setting SYNC_RUN_BUDGET_SECONDS is invalid"),
        ({"SYNC_RUN_BUDGET_SECONDS": "600"}, "Setting SYNC_RUN_BUDGET_SECONDS is invalid"),
        ({"SYNC_RUN_BUDGET_SECONDS": "eight minutes"}, "Setting SYNC_RUN_BUDGET_SECONDS is invalid"),
    ],
)
def test_bad_setting_is_one_line_naming_it(change: dict[str, str | None], expected: str) -> None:
    env = {**VALID, **change}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert "secret" not in message.lower() or "CRM_LAUNCH_SECRET" in message


def test_example_local_settings_document_every_setting() -> None:
    import json
    from pathlib import Path

    from sync_core.settings import SETTING_HELP, AppSettings

    example = json.loads((Path(__file__).parent.parent / "local.settings.example.json").read_text())
    aliases = {str(f.validation_alias.choices[0]) for f in AppSettings.model_fields.values()}  # type: ignore[union-attr]
    assert aliases == set(SETTING_HELP)
    assert aliases <= set(example["Values"])
    assert example["Values"]["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert aliases <= set(example["_comments"])


def test_host_json_is_valid_for_core_tools() -> None:
    import json
    from pathlib import Path

    host = json.loads((Path(__file__).parent.parent / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["extensions"]["queues"]["maxDequeueCount"] == 5


def test_the_run_budget_stays_under_the_function_timeout() -> None:
    """The default and the largest budget leave the last chunk (an eighth of the budget at most) and the
    subscription settling room before host.json's functionTimeout stops the invocation."""
    import json
    from pathlib import Path

    from sync_core.settings import MAX_RUN_BUDGET_SECONDS

    host = json.loads((Path(__file__).parent.parent / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    timeout = hours * 3600 + minutes * 60 + seconds
    assert timeout <= 600  # the Consumption plan's maximum
    assert load_settings(VALID).sync_run_budget_seconds == 480
    assert MAX_RUN_BUDGET_SECONDS * 1.125 < timeout
    assert load_settings({**VALID, "SYNC_RUN_BUDGET_SECONDS": "60"}).sync_run_budget_seconds == 60
