from __future__ import annotations

import io
import json
import logging

from sync_core.logs import JsonFormatter, redact, register_secret


def test_json_line_carries_event_fields_and_masks_secrets() -> None:
    register_secret("super-secret-client-value")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sync_core.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("run finished with super-secret-client-value",
                    extra={"event": "run", "user": "u1", "run_id": "r1", "outcome": "succeeded"})
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    payload = json.loads(line)
    assert payload["event"] == "run" and payload["user"] == "u1" and payload["run_id"] == "r1"
    assert "super-secret-client-value" not in line


def test_token_shapes_are_masked() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl"
    text = redact(f"Authorization: Bearer abcdefghijklmnop {jwt} refresh_token=0.AAAAabcdefgh code=xyz123456")
    assert "abcdefghijklmnop" not in text and jwt not in text
    assert "0.AAAAabcdefgh" not in text and "xyz123456" not in text
