"""No secret reaches any log handler: handlers added after function_app is imported (what Application
Insights does in Azure), on the root logger or on a logger that does not propagate, for records of our
loggers, the Azure SDK, MSAL, httpx, urllib3 and anyone else, in messages, args, extras, stacks and
exceptions."""
from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from sync_core.adapters.tables.connections import TableTokens
from sync_core.adapters.tables.common import connect, key_part
from sync_core.adapters.tokens import TokenCipher
from sync_core.redaction import MASK, RUNTIME_SECRETS_MAX, redact, redact_record, register_secret
from sync_core.settings import load_settings
from tests.log_redaction_probe import LOGGERS

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["client_secret", "launch_secret", "encryption_key", "access_jwt", "access_opaque", "refresh",
         "refresh_kv", "bearer_header"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tokens() -> dict[str, str]:
    header = _b64(b'{"alg":"RS256","typ":"JWT"}')
    claims = _b64(json.dumps({"aud": "https://graph.microsoft.com", "oid": secrets.token_hex(8)}).encode())
    return {
        "access_jwt": f"{header}.{claims}.{_b64(os.urandom(64))}",
        # MSA access tokens and refresh tokens are opaque: only their registration can catch them.
        "access_opaque": "EwB" + base64.b64encode(os.urandom(90)).decode(),
        "refresh": "0.AAAA" + _b64(os.urandom(120)),
        "refresh_kv": "1.AQEA" + _b64(os.urandom(60)),
        "bearer": secrets.token_urlsafe(40),
    }


def test_no_secret_reaches_handlers_added_after_function_app_is_imported(app_env: dict[str, str]) -> None:
    tokens = _tokens()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **app_env, "PROBE_TOKENS": json.dumps(tokens)}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "log_redaction_probe.py")], capture_output=True,
                         text=True, cwd=ROOT, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    outputs: dict[str, str] = json.loads(run.stdout.strip().splitlines()[-1])
    values = {"client_secret": app_env["GRAPH_CLIENT_SECRET"], "launch_secret": app_env["CRM_LAUNCH_SECRET"],
              "encryption_key": app_env["TOKEN_ENCRYPTION_KEY"], **tokens}
    for where, text in outputs.items():
        # The handlers did get the records, exceptions and stacks: the test looks at real output.
        names = LOGGERS if where.startswith("root") else ["some_vendor.isolated"]
        for name in names:
            for kind in KINDS:
                assert f"marker-{name}-{kind}" in text, f"{where}: nothing logged by {name} for {kind}"
        assert "Traceback (most recent call last)" in text and "RuntimeError" in text and "ValueError" in text
        if where in ("root", "isolated"):
            assert "Stack (most recent call last)" in text
        assert MASK in text
        leaked = [kind for kind, value in values.items() if value in text]
        assert leaked == [], f"{where} shows {leaked}"


def test_a_secret_registered_after_a_record_was_cleaned_is_masked_at_the_next_handler() -> None:
    late = "late-" + secrets.token_hex(12)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value %s", (late,), None)
    redact_record(record)
    assert late in record.getMessage()
    register_secret(late)
    redact_record(record)
    assert late not in record.getMessage() and record.args is None


def test_a_chained_exception_keeps_its_types_and_traceback_but_not_its_secrets() -> None:
    secret = "chained-" + secrets.token_hex(12)
    register_secret(secret)
    try:
        try:
            raise KeyError(secret)
        except KeyError as inner:
            raise PermissionError(f"denied {secret}") from inner
    except PermissionError as error:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, (PermissionError, error,
                                                                                      error.__traceback__))
    redact_record(record)
    assert record.exc_info is not None and record.exc_info[1] is not None
    text = "".join(traceback.format_exception(record.exc_info[1]))
    assert secret not in text
    assert "PermissionError: denied ***" in text and "KeyError: '***'" in text
    assert "direct cause" in text and "test_a_chained_exception" in text
    assert record.exc_info[0] is not None and record.exc_info[0].__name__ == "PermissionError"


@pytest.mark.parametrize("line", [
    "Authorization: SharedKey devstoreaccount1:c2lnbmF0dXJl",
    "{'Authorization': 'Basic dXNlcjpwYXNz', 'Accept': 'x'}",
    "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6;",
    "{'refresh_token': '0.AAAAxyzxyzxyz', 'client_secret': 'abc~def.ghi'}",
])
def test_header_and_key_value_shapes_are_masked(line: str) -> None:
    cleaned = redact(line)
    assert MASK in cleaned
    for fragment in ("c2lnbmF0dXJl", "dXNlcjpwYXNz", "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6", "0.AAAAxyzxyzxyz",
                     "abc~def.ghi"):
        assert fragment not in cleaned


def test_runtime_secrets_are_bounded_and_the_oldest_are_forgotten_first() -> None:
    first = "rt-first-" + secrets.token_hex(10)
    register_secret(first, runtime=True)
    newer = ["rt-" + secrets.token_hex(10) for _ in range(RUNTIME_SECRETS_MAX)]
    for value in newer:
        register_secret(value, runtime=True)
    assert first in redact(first)
    assert newer[0] not in redact(newer[0]) and newer[-1] not in redact(newer[-1])


def _msal_cache(access: str, refresh: str) -> str:
    """A token cache in MSAL's serialization (the format SerializableTokenCache reads and writes)."""
    home = "oid.tid-login.example-"
    return json.dumps({
        "AccessToken": {home + "accesstoken": {"credential_type": "AccessToken", "secret": access}},
        "RefreshToken": {home + "refreshtoken": {"credential_type": "RefreshToken", "secret": refresh}},
        "Account": {}, "IdToken": {}, "AppMetadata": {},
    })


def test_tokens_saved_or_loaded_by_the_token_store_are_masked(app_env: dict[str, str]) -> None:
    settings = load_settings(app_env)
    tokens = TableTokens(connect(settings.storage_connection_string), settings.storage_name,
                         TokenCipher(settings.token_key_bytes))
    saved_access, saved_refresh = "EwB" + secrets.token_urlsafe(60), "0.AAAA" + secrets.token_urlsafe(90)
    assert saved_refresh in redact(f"rt {saved_refresh}")
    tokens.save("tenant-1", "user-1", _msal_cache(saved_access, saved_refresh))
    line = redact(f"got {saved_access} and {saved_refresh}")
    assert saved_access not in line and saved_refresh not in line
    # A cache written by another process (a sign-in elsewhere): its tokens are known once loaded here.
    other_access, other_refresh = "EwB" + secrets.token_urlsafe(60), "0.AAAA" + secrets.token_urlsafe(90)
    sealed = tokens.cipher.encrypt(_msal_cache(other_access, other_refresh), "tenant-1/user-2")
    tokens.table.upsert({"PartitionKey": key_part("tenant-1"), "RowKey": key_part("user-2"), "chunks": 1,
                         "c0": sealed})
    assert other_refresh in redact(other_refresh)
    assert tokens.load("tenant-1", "user-2") is not None
    assert other_access not in redact(other_access) and other_refresh not in redact(other_refresh)
