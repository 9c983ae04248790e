"""Start `python -m devhost` as a real subprocess (by PID, via devhost.procs) and talk to it over HTTP.

A module with its own name (not conftest) so test modules can import it unambiguously.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from devhost.procs import spawn, stop, wait_until
from sync_core.settings import SETTING_HELP

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_APP = "tests.devhost.sample_app:app"

# The subprocess must see only the settings a test gives it, never ones leaking from the developer's shell.
_OWNED_PREFIXES = ("DEVHOST_", "SAMPLE_", "FUNCTIONS_", "AzureWebJobs")


def clean_environ(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTING_HELP and not k.startswith(_OWNED_PREFIXES)}
    env.update(overrides)
    return env


@dataclass
class RunningHost:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    events_path: Path | None = None
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=15, trust_env=False))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, self.url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        if self.events_path is None or not self.events_path.exists():
            return []
        lines = self.events_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float,
                 what: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            if self.proc.poll() is not None:
                raise AssertionError(f"devhost exited ({self.proc.returncode}) waiting for {what}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; events: {self.events()}\n{self.log()}")

    def terminate(self, sig: int | None = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the host itself (not its group) unless `sig` is None, then return its exit code."""
        self.client.close()
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def start_devhost(workdir: Path, env: dict[str, str], *, app: str = SAMPLE_APP,
                  settings: dict[str, Any] | None = None, host_json: dict[str, Any] | None = None,
                  events: bool = False) -> RunningHost:
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready.json"
    log_path = workdir / "devhost.log"
    args = [sys.executable, "-m", "devhost", "--app", app, "--port", "0", "--ready-file", str(ready),
            "--max-poll-interval", "0.5", "--shutdown-timeout", "10"]
    if settings is not None:
        (workdir / "local.settings.json").write_text(json.dumps(settings), encoding="utf-8")
        args += ["--settings", str(workdir / "local.settings.json")]
    if host_json is not None:
        (workdir / "host.json").write_text(json.dumps(host_json), encoding="utf-8")
        args += ["--host-json", str(workdir / "host.json")]
    events_path = workdir / "events.jsonl" if events else None
    if events_path is not None:
        env = {**env, "SAMPLE_EVENTS_FILE": str(events_path)}
    proc = spawn(args, log_path=log_path, env=env, cwd=ROOT)
    try:
        wait_until(ready.exists, 30, "devhost", proc)
    except (RuntimeError, TimeoutError) as exc:
        stop(proc)
        raise AssertionError(f"{exc}\n{log_path.read_text(errors='replace')}") from None
    url = json.loads(ready.read_text())["url"]
    return RunningHost(proc, url, log_path, events_path)


SAMPLE_HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "http": {"routePrefix": "api"},
        "queues": {"maxDequeueCount": 5, "visibilityTimeout": "00:00:01", "batchSize": 4,
                   "messageEncoding": "base64"},
    },
}


@dataclass(frozen=True)
class SampleHost:
    host: RunningHost
    queue: str
    connection_string: str
    function_key: str
    master_key: str
