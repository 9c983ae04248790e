"""Run in a fresh interpreter by tests/test_log_redaction.py: imports function_app as the Functions worker
does, THEN adds handlers the way the platform does, logs secrets through many loggers and prints, as one
JSON object, everything those handlers produced.

Secrets come from the app settings in the environment and from PROBE_TOKENS (JSON: access_jwt,
access_opaque, refresh); the opaque tokens are registered after the handlers exist, as the app does
when it obtains tokens at run time.
"""
from __future__ import annotations

import io
import json
import logging
import os
import traceback

import function_app  # noqa: F401  (the import under test)
from sync_core.logs import register_secret

LOGGERS = ["sync_core.kinds.contacts.run", "azure.core.pipeline.policies.http_logging_policy", "azure.identity", "msal",
           "httpx", "urllib3.connectionpool", "some_vendor.sdk.transport"]


class ExporterLike(logging.Handler):
    """What a telemetry exporter reads: every attribute, the args, and the exception itself."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(repr(record.__dict__))
        self.out.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            self.out.append(f"{record.exc_info[0].__name__ if record.exc_info[0] else ''}: {exc}")
            self.out.append("".join(traceback.format_exception(exc)))


def _handlers(target: logging.Logger) -> tuple[io.StringIO, ExporterLike]:
    stream = io.StringIO()
    plain = logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))  # prints exc_info and stack
    exporter = ExporterLike()
    target.addHandler(plain)
    target.addHandler(exporter)
    return stream, exporter


def _log_everything(logger: logging.Logger, secrets: dict[str, str]) -> None:
    logger.setLevel(logging.DEBUG)
    for kind, value in secrets.items():
        marker = f"marker-{logger.name}-{kind}"
        logger.info(f"{marker} plain {value}")
        logger.info("%s args %s", marker, value)
        logger.info("%(marker)s mapping %(value)s", {"marker": marker, "value": value})
        logger.info("%s extra", marker, extra={"detail": value, "headers": {"x-token": value}})
        logger.debug("%s stack", marker, extra={"detail": value}, stack_info=True)
        try:
            try:
                raise ValueError(f"cause {value}")
            except ValueError as inner:
                error = RuntimeError(f"{marker} failed with {value}")
                error.add_note(f"note {value}")
                raise error from inner
        except RuntimeError:
            logger.exception("%s exception", marker)
    logger.warning("Request headers: {'Authorization': 'Bearer %s', 'Accept': 'application/json'}",
                   secrets["access_opaque"])
    logger.warning("Authorization: Bearer %s", secrets["refresh"])


def main() -> None:
    tokens = json.loads(os.environ["PROBE_TOKENS"])
    secrets = {
        "client_secret": os.environ["GRAPH_CLIENT_SECRET"],
        "launch_secret": os.environ["CRM_LAUNCH_SECRET"],
        "encryption_key": os.environ["TOKEN_ENCRYPTION_KEY"],
        "access_jwt": tokens["access_jwt"],
        "access_opaque": tokens["access_opaque"],
        "refresh": tokens["refresh"],
        "refresh_kv": f"refresh_token={tokens['refresh_kv']}",
        "bearer_header": f"Authorization: Bearer {tokens['bearer']}",
    }
    root_stream, root_exporter = _handlers(logging.getLogger())
    isolated = logging.getLogger("some_vendor.isolated")
    isolated.propagate = False
    isolated_stream, isolated_exporter = _handlers(isolated)
    # Obtained at run time, after the handlers exist (a token refresh).
    register_secret(tokens["access_opaque"], runtime=True)
    register_secret(tokens["refresh"], runtime=True)
    for name in LOGGERS:
        _log_everything(logging.getLogger(name), secrets)
    _log_everything(isolated, secrets)
    print(json.dumps({"root": root_stream.getvalue(), "root_exporter": "\n".join(root_exporter.out),
                      "isolated": isolated_stream.getvalue(), "isolated_exporter": "\n".join(isolated_exporter.out)}))


if __name__ == "__main__":
    main()
