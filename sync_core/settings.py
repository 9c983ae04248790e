"""Every setting of the app, in one pydantic-settings model, loaded once.

Azure Functions hands app settings to the worker as environment variables, and so
does the development host (from local.settings.json). The environment variable of
each field is its alias. A missing or malformed setting raises SettingsError whose
message is a single line naming the setting and what is expected.
"""
from __future__ import annotations

import base64
import functools
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync_core.domain.errors import SettingsError

# What each setting holds, shown in start-up errors, the README table and local.settings.example.json.
SETTING_HELP: dict[str, str] = {
    "AzureWebJobsStorage": "a storage connection string (Azurite's or an Azure storage account's)",
    "GRAPH_BASE_URL": "the Microsoft Graph v1.0 base URL, e.g. https://graph.microsoft.com/v1.0",
    "IDENTITY_AUTHORITY": "the identity authority URL, e.g. https://login.microsoftonline.com/organizations",
    "IDENTITY_CA_FILE": "optional path of a CA certificate file that signs the identity authority (local emulator only)",
    "GRAPH_CLIENT_ID": "the application (client) id of the Entra app registration",
    "GRAPH_CLIENT_SECRET": "a client secret of that app registration",
    "TOKEN_ENCRYPTION_KEY": "32 random bytes, urlsafe-base64 encoded (python -c 'import os,base64;print(base64.urlsafe_b64encode(os.urandom(32)).decode())')",
    "PUBLIC_BASE_URL": "the app's public base URL (https in production), used for OAuth redirects and webhooks",
    "CRM_LAUNCH_SECRET": "the secret shared with the CRM to sign launch links, at least 32 characters",
    "STORAGE_PREFIX": "optional lowercase letters/digits prefixed to every table and queue name",
    "SYNC_QUEUE_NAME": "the storage queue that carries per-user sync jobs",
    "GRAPH_RATE_LIMIT": "Graph requests allowed per mailbox per window (Outlook: 10000; batch items count)",
    "GRAPH_RATE_WINDOW_SECONDS": "the window of GRAPH_RATE_LIMIT in seconds (Outlook: 600)",
    "GRAPH_TIMEOUT_SECONDS": "seconds before a Graph request counts as timed out",
    "SYNC_RUN_BUDGET_SECONDS": "seconds one sync invocation works before it stops at a safe point and queues a continuation (default 480, at most 520: under host.json's functionTimeout of 10 minutes, the Consumption plan's maximum)",
}

# Under host.json's functionTimeout (10 minutes): the last chunk may run past the budget by an eighth
# of it at most, and the job settles the user's subscriptions after the sync.
MAX_RUN_BUDGET_SECONDS = 520.0


class AppSettings(BaseSettings):
    """The app's configuration. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False, frozen=True)

    storage_connection_string: str = Field(
        validation_alias=AliasChoices("AzureWebJobsStorage"), min_length=10
    )
    graph_base_url: str = Field(
        default="https://graph.microsoft.com/v1.0", validation_alias=AliasChoices("GRAPH_BASE_URL")
    )
    identity_authority: str = Field(
        default="https://login.microsoftonline.com/organizations",
        validation_alias=AliasChoices("IDENTITY_AUTHORITY"),
    )
    identity_ca_file: str | None = Field(default=None, validation_alias=AliasChoices("IDENTITY_CA_FILE"))
    client_id: str = Field(validation_alias=AliasChoices("GRAPH_CLIENT_ID"), min_length=1)
    client_secret: str = Field(validation_alias=AliasChoices("GRAPH_CLIENT_SECRET"), min_length=1, repr=False)
    token_encryption_key: str = Field(validation_alias=AliasChoices("TOKEN_ENCRYPTION_KEY"), repr=False)
    public_base_url: str = Field(validation_alias=AliasChoices("PUBLIC_BASE_URL"))
    crm_launch_secret: str = Field(
        validation_alias=AliasChoices("CRM_LAUNCH_SECRET"), min_length=32, repr=False
    )
    storage_prefix: str = Field(default="", validation_alias=AliasChoices("STORAGE_PREFIX"), pattern=r"^[a-z0-9]{0,20}$")
    sync_queue_name: str = Field(
        default="sync-jobs", validation_alias=AliasChoices("SYNC_QUEUE_NAME"), pattern=r"^[a-z0-9][a-z0-9-]{2,40}$"
    )
    graph_rate_limit: int = Field(default=10_000, validation_alias=AliasChoices("GRAPH_RATE_LIMIT"), ge=1)
    graph_rate_window_seconds: float = Field(
        default=600.0, validation_alias=AliasChoices("GRAPH_RATE_WINDOW_SECONDS"), gt=0
    )
    graph_timeout_seconds: float = Field(default=30.0, validation_alias=AliasChoices("GRAPH_TIMEOUT_SECONDS"), gt=0)
    sync_run_budget_seconds: float = Field(default=480.0, validation_alias=AliasChoices("SYNC_RUN_BUDGET_SECONDS"),
                                           ge=1, le=MAX_RUN_BUDGET_SECONDS)

    @field_validator("graph_base_url", "identity_authority", "public_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("identity_ca_file")
    @classmethod
    def _existing_file(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not Path(value).is_file():
            raise ValueError("file does not exist")
        return value

    @field_validator("token_encryption_key")
    @classmethod
    def _key_32_bytes(cls, value: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4))
        except (ValueError, TypeError) as exc:
            raise ValueError("is not urlsafe base64") from exc
        if len(raw) != 32:
            raise ValueError("must decode to 32 bytes")
        return value

    @property
    def token_key_bytes(self) -> bytes:
        value = self.token_encryption_key
        return base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4))

    def storage_name(self, base: str) -> str:
        """Table and queue names carry the prefix, so tests and tenants never share storage."""
        return f"{self.storage_prefix}{base}"


def _alias_of(field_name: str) -> str:
    alias = AppSettings.model_fields[field_name].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def secret_setting_names() -> list[str]:
    """The settings that hold secrets (those kept out of repr), by environment variable name."""
    return [_alias_of(name) for name, field in AppSettings.model_fields.items() if field.repr is False]


def load_settings(environ: Mapping[str, str] | None = None) -> AppSettings:
    """Build settings from `environ` (default: the process environment); one-line SettingsError on failure."""
    source = dict(os.environ if environ is None else environ)
    names = {_alias_of(name) for name in AppSettings.model_fields}
    values = {key: value for key, value in source.items() if key in names}
    try:
        return AppSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        if field in AppSettings.model_fields:
            field = _alias_of(field)
        problem = "is missing" if first["type"] == "missing" else f"is invalid ({first['msg']})"
        expected = SETTING_HELP.get(field, "a valid value")
        raise SettingsError(f"Setting {field} {problem}: expected {expected}.") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> AppSettings:
    """The process-wide settings, loaded on first use."""
    return load_settings()
