"""The whole local system for chaos runs and fault tests, with the handles a fault needs: Azurite in
persistent mode (restartable, data kept), the Microsoft 365 emulator with an app registration, and the
development host serving function_app.app as a subprocess that can be SIGKILLed and started again on the
same port (OAuth redirects and webhooks keep working).

Users connect through the real OAuth flow over HTTP with the helpers of devhost/stack.py (WebClient,
connect_with_emulator): the same Stack object, so every helper written for the function tests works here.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.azurite import Azurite
from devhost.procs import free_port, spawn, stop, wait_until
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.app.services import Services
from sync_core.bootstrap import build_services
from sync_core.settings import AppSettings, load_settings
from devhost.stack import LogCollector, Stack, WebClient, app_settings, clean_environ, connect_with_emulator

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench.chaos")


@dataclass
class Devhost:
    """`python -m devhost` (or bench.chaos_host with a short lease) as a killable child on a fixed port."""

    workdir: Path
    env: dict[str, str]
    port: int
    lease_seconds: float | None = None
    host_json: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "devhost.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 90.0) -> None:
        settings_file = self.workdir / "local.settings.json"
        settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": self.env}), encoding="utf-8")
        ready = self.workdir / "ready.json"
        ready.unlink(missing_ok=True)
        host_args = ["--port", str(self.port), "--ready-file", str(ready), "--settings", str(settings_file),
                     "--max-poll-interval", "0.2", "--shutdown-timeout", "10"]
        if self.host_json is not None:
            host_args += ["--host-json", str(self.host_json)]
        if self.lease_seconds is not None:
            args = [sys.executable, "-m", "bench.chaos_host", "--lease-seconds", str(self.lease_seconds), "--",
                    *host_args]
        else:
            args = [sys.executable, "-m", "devhost", *host_args]
        self.proc = spawn(args, log_path=self.log_path, env=clean_environ(PYTHONPATH=str(ROOT), **self.extra_env),
                          cwd=ROOT)
        self.starts += 1
        try:
            wait_until(ready.exists, timeout, "devhost", self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"{exc}\n{tail}") from None

    def kill(self) -> None:
        """SIGKILL the host and everything it started: in-flight syncs die wherever they are."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(timeout=10)
        self.kills += 1

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop(proc, timeout=15)

    def restart(self) -> None:
        self.kill()
        self.start()


@dataclass
class ChaosStack:
    workdir: Path
    azurite: Azurite
    emulator: EmulatorProcess
    control: ControlClient
    devhost: Devhost
    stack: Stack
    owns_emulator: bool = False

    @property
    def services(self) -> Services:
        return self.stack.services

    @property
    def settings(self) -> AppSettings:
        return self.stack.settings

    @property
    def url(self) -> str:
        return self.stack.url

    def browser(self) -> WebClient:
        return self.stack.browser()

    def connect(self, tenant_id: str, user_id: str, ms_user: dict[str, Any]) -> WebClient:
        """Launch from the CRM and connect through the emulator's sign-in and consent pages."""
        client = self.browser()
        client.launch(tenant_id, user_id)
        page = connect_with_emulator(client, ms_user)
        if page.status_code != 200 or "Connected to Microsoft 365" not in page.text:
            raise RuntimeError(f"connecting {user_id} failed: {page.status_code} {page.text[:400]}")
        return client

    def restart_azurite(self) -> float:
        """Stop and start Azurite on the same ports (persistent: data survives); returns the downtime."""
        started = time.monotonic()
        self.azurite.restart()
        return time.monotonic() - started

    def close(self) -> None:
        self.devhost.stop()
        self.azurite.stop()
        if self.owns_emulator:
            self.control.close()
            self.emulator.stop()


def start_chaos_stack(workdir: Path, *, emulator: EmulatorProcess | None = None,
                      control: ControlClient | None = None, lease_seconds: float | None = None,
                      graph_timeout: float | None = None, host_json: Path | None = None,
                      persistent: bool = True) -> ChaosStack:
    """Start Azurite (persistent under workdir/azurite unless told otherwise), the emulator (unless given),
    register an app, and start the development host."""
    workdir.mkdir(parents=True, exist_ok=True)
    azurite = Azurite(location=workdir / "azurite" if persistent else None, log_path=workdir / "azurite.log")
    owns = emulator is None
    if emulator is None:
        emulator = EmulatorProcess(workdir=workdir / "emulator")
    azurite_started = False
    try:
        if owns:
            emulator.start()
        azurite.start()
        azurite_started = True
        control = control or emulator.control_client()
        port = free_port()
        env = app_settings(azurite.connection_string, emulator, control, port, "cx" + secrets.token_hex(3))
        if graph_timeout is not None:
            env["GRAPH_TIMEOUT_SECONDS"] = str(graph_timeout)
        devhost = Devhost(workdir, env, port, lease_seconds=lease_seconds, host_json=host_json)
        devhost.start()
    except BaseException:
        if azurite_started:
            azurite.stop()
        if owns:
            emulator.stop()
        raise
    settings = load_settings(env)
    stack = Stack(env["PUBLIC_BASE_URL"], env, settings, build_services(settings), emulator, control, devhost.log_path,
                  LogCollector(), {env["GRAPH_CLIENT_SECRET"], env["TOKEN_ENCRYPTION_KEY"], env["CRM_LAUNCH_SECRET"]})
    return ChaosStack(workdir, azurite, emulator, control, devhost, stack, owns_emulator=owns)
