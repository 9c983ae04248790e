"""The emulator process seen from outside: `EmulatorProcess` starts `python -m m365_emulator` (serve.py) as a
child process and reads its ready file; `ControlClient` calls its control API. Used by tests, benchmarks and
tools.

This module imports only the standard library and httpx: test processes import it without loading the
server stack.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("m365_emulator")

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


@dataclass
class EmulatorProcess:
    """`python -m m365_emulator` as a child process: start, wait for its ready file, stop by PID."""

    workdir: Path | None = None
    state_file: Path | None = None
    throttle_limit: int | None = None
    throttle_window: float | None = None
    max_concurrency: int | None = None
    extra_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    ready: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="m365emu-"))
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def ready_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "ready.json"

    @property
    def log_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "emulator.log"

    def args(self) -> list[str]:
        args = [sys.executable, "-m", "m365_emulator", "--host", self.host, "--port", "0",
                "--ready-file", str(self.ready_file)]
        if self.state_file is not None:
            args += ["--state-file", str(self.state_file)]
        else:
            assert self.workdir is not None
            args += ["--tls-dir", str(self.workdir / "tls")]
        if self.throttle_limit is not None:
            args += ["--throttle-limit", str(self.throttle_limit)]
        if self.throttle_window is not None:
            args += ["--throttle-window", str(self.throttle_window)]
        if self.max_concurrency is not None:
            args += ["--max-concurrency", str(self.max_concurrency)]
        return args + list(self.extra_args)

    def start(self, timeout: float = 30.0) -> "EmulatorProcess":
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.ready_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_PARENT), env.get("PYTHONPATH", "")) if p)
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(self.args(), stdout=out, stderr=subprocess.STDOUT, env=env,
                                         cwd=str(PACKAGE_PARENT), start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self.proc.returncode}:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the emulator was not ready within {timeout:.0f} s:\n{self._log_tail()}")
            time.sleep(0.03)
        self.ready = json.loads(self.ready_file.read_text())
        return self

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)

    def restart(self, timeout: float = 30.0) -> "EmulatorProcess":
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> "EmulatorProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def graph(self) -> str:
        return str(self.ready["graph"])

    @property
    def control(self) -> str:
        return str(self.ready["control"])

    @property
    def ui(self) -> str:
        return str(self.ready["ui"])

    @property
    def authority(self) -> str | None:
        return self.ready.get("authority")

    @property
    def ca_file(self) -> str | None:
        return self.ready.get("ca_file")

    @property
    def tenant_id(self) -> str:
        return str(self.ready["tenant_id"])

    def control_client(self) -> "ControlClient":
        return ControlClient(self.control)


class ControlClient:
    """The control API from Python (synchronous httpx)."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        self.base = base.rstrip("/")
        self.http = httpx.Client(base_url=self.base, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.http.request(method, path, json=body, params=params or None)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} → {response.status_code}: {response.text}")
        return response.json()

    def create_user(self, display_name: str | None = None, user_principal_name: str | None = None,
                    password: str | None = None) -> dict[str, Any]:
        """A new mailbox; without a name, a unique one (so tests sharing an emulator never collide)."""
        tag = secrets.token_hex(4)
        body: dict[str, Any] = {"displayName": display_name or f"Test User {tag}",
                                "userPrincipalName": user_principal_name or f"user-{tag}@contoso.test"}
        if password is not None:
            body["password"] = password
        return dict(self._call("POST", "/users", body))

    def token(self, user_id: str, client_id: str | None = None) -> str:
        return str(self._call("POST", f"/users/{user_id}/token", {"client_id": client_id} if client_id else {})["access_token"])

    def new_user_with_token(self, client_id: str | None = None) -> tuple[dict[str, Any], str]:
        user = self.create_user()
        return user, self.token(user["id"], client_id)

    def revoke(self, user_id: str) -> None:
        self._call("POST", f"/users/{user_id}/revoke")

    def expire_delta_tokens(self, user_id: str) -> None:
        self._call("POST", f"/users/{user_id}/expire-delta-tokens")

    def move_contact(self, user_id: str, contact_id: str, destination_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/users/{user_id}/contacts/{contact_id}/move", {"destinationId": destination_id}))

    def register_app(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> dict[str, Any]:
        return dict(self._call("POST", "/apps", {"client_id": client_id, "client_secret": client_secret,
                                                 "redirect_uris": redirect_uris}))

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self._call("GET", "/requests", since=since)["value"])

    def last_request_seq(self) -> int:
        return int(self._call("GET", "/requests", since=10**12)["lastSeq"])

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def advance_clock(self, seconds: float) -> None:
        self._call("POST", "/clock", {"advance_seconds": seconds})

    def reset(self) -> None:
        self._call("POST", "/reset")

    def state(self, user_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/state/{user_id}"))

    def throttle(self, **settings: Any) -> dict[str, Any]:
        """Change throttling (limit, window_seconds, max_concurrency, service_delay_ms); no arguments: read it."""
        if settings:
            return dict(self._call("PUT", "/throttle", settings))
        return dict(self._call("GET", "/throttle"))

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/faults", spec))

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def delta_settings(self, **settings: Any) -> dict[str, Any]:
        if settings:
            return dict(self._call("PUT", "/delta", settings))
        return dict(self._call("GET", "/delta"))
