"""`make run`: Azurite, the Microsoft 365 emulator (when it exists), the development host and demo data.

    python -m devhost.run

Everything it starts is a child process it stops by PID on Ctrl-C (SIGINT) or SIGTERM; nothing is left running.
State lives under .data/ (Azurite's storage, the emulator's state, logs) and survives to the next run, as does
local.settings.json, which the first run writes with generated secrets. Values that describe this run's live
stack (Azurite's connection string, the emulator's URLs, the host's URL) override local ones from the file, since
ports can change between runs. While running, .data/stack.json records the URLs and child PIDs.

Environment:
    DEVHOST_DATA_DIR       where state and logs go (default: <repo>/.data)
    DEVHOST_SETTINGS_FILE  the local settings file (default: <repo>/local.settings.json)
"""
from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from devhost.azurite import ACCOUNT, Azurite
from devhost.procs import free_port, spawn, stop, wait_until

ROOT = Path(__file__).resolve().parent.parent
AZURITE_PORTS = (10000, 10001, 10002)  # blob, queue, table: Azurite's and the Storage SDKs' defaults
HTTP_PORT = 7071
MICROSOFT_GRAPH = "https://graph.microsoft.com/v1.0"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/organizations"
READY_TIMEOUT = 60.0


class Shutdown(BaseException):
    """Raised from the signal handler so every step, however far it got, unwinds through the cleanup."""


def data_dir() -> Path:
    return Path(os.environ.get("DEVHOST_DATA_DIR") or ROOT / ".data").resolve()


def settings_file() -> Path:
    return Path(os.environ.get("DEVHOST_SETTINGS_FILE") or ROOT / "local.settings.json").resolve()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _is_local(value: str) -> bool:
    return any(marker in value for marker in ("127.0.0.1", "localhost", f"AccountName={ACCOUNT}",
                                              "UseDevelopmentStorage=true"))


class _Signals:
    """SIGINT/SIGTERM raise Shutdown, except inside `deferred()`, where they wait until the block ends.

    Deferring (rather than blocking the signals with a mask) matters: a blocked mask would be inherited by the
    children started inside the block, and they would then ignore the SIGTERM that stops them.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.depth:
            self.pending = signum
            return
        raise Shutdown(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                raise Shutdown(self.pending)


SIGNALS = _Signals()


def generated_settings(connection_string: str, emulator: dict[str, Any] | None, http_port: int) -> dict[str, Any]:
    """A first local.settings.json: live endpoints plus fresh secrets (kept across runs by the file)."""
    values: dict[str, str] = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsFeatureFlags": "EnableWorkerIndexing",
        "AzureWebJobsStorage": connection_string,
        "GRAPH_BASE_URL": str(emulator["graph"]) if emulator else MICROSOFT_GRAPH,
        "IDENTITY_AUTHORITY": str(emulator["authority"]) if emulator else MICROSOFT_AUTHORITY,
        "GRAPH_CLIENT_ID": str(uuid.uuid4()),
        "GRAPH_CLIENT_SECRET": secrets.token_urlsafe(32),
        "TOKEN_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{http_port}",
        "CRM_LAUNCH_SECRET": secrets.token_hex(32),
        "STORAGE_PREFIX": "",
        "SYNC_QUEUE_NAME": "sync-jobs",
        "DEVHOST_FUNCTION_KEY": secrets.token_urlsafe(32),
        "DEVHOST_MASTER_KEY": secrets.token_urlsafe(32),
    }
    if emulator and emulator.get("ca_file"):
        values["IDENTITY_CA_FILE"] = str(emulator["ca_file"])
    return {"IsEncrypted": False, "Values": values, "Host": {"LocalHttpPort": http_port}}


def ensure_settings_file(path: Path, generated: dict[str, Any]) -> list[str]:
    """Write `generated` if the file is missing; otherwise add only the Values it lacks (a newer version of the
    app may need more settings) and never touch existing ones. Returns the names written."""
    if not path.exists():
        _write_atomically(path, generated, private=True)
        return sorted(generated["Values"])
    document = json.loads(path.read_text(encoding="utf-8"))
    values = document.setdefault("Values", {}) if isinstance(document, dict) else None
    if not isinstance(values, dict):
        return []  # malformed: the development host reports it in one line
    missing = {name: value for name, value in generated["Values"].items() if name not in values}
    if missing:
        values.update(missing)
        _write_atomically(path, document, private=True)
    return sorted(missing)


def live_overrides(values: dict[str, str], connection_string: str, emulator: dict[str, Any] | None,
                   http_url: str) -> dict[str, str]:
    """Settings that must follow this run's live stack (ports can change), unless the file points elsewhere."""
    overrides: dict[str, str] = {}
    if _is_local(values.get("AzureWebJobsStorage", "")) or "AzureWebJobsStorage" not in values:
        overrides["AzureWebJobsStorage"] = connection_string
    if _is_local(values.get("PUBLIC_BASE_URL", "127.0.0.1")):
        overrides["PUBLIC_BASE_URL"] = http_url
    if emulator:
        # Microsoft's public endpoints are what a first run writes when no emulator exists yet; they give way
        # to the emulator too. Any other URL is the developer's choice and stays.
        replaceable = {MICROSOFT_GRAPH, MICROSOFT_AUTHORITY, ""}
        for name, key in (("GRAPH_BASE_URL", "graph"), ("IDENTITY_AUTHORITY", "authority")):
            current = values.get(name, "")
            if emulator.get(key) and (current in replaceable or _is_local(current)):
                overrides[name] = str(emulator[key])
        # The emulator's CA only makes sense with the emulator's authority.
        if "IDENTITY_AUTHORITY" in overrides and emulator.get("ca_file"):
            overrides["IDENTITY_CA_FILE"] = str(emulator["ca_file"])
    return overrides


@dataclass
class Stack:
    data: Path
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    azurite: Azurite | None = None

    def say(self, line: str) -> None:
        print(line, flush=True)

    def start_azurite(self) -> Azurite:
        ports = AZURITE_PORTS if all(_bindable(p) for p in AZURITE_PORTS) else (free_port(), free_port(), free_port())
        logs = self.data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.azurite = Azurite(location=self.data / "azurite", log_path=logs / "azurite.log",
                               blob_port=ports[0], queue_port=ports[1], table_port=ports[2])
        with SIGNALS.deferred():
            self.azurite.start()
        self.say(f"Azurite: blob/queue/table on 127.0.0.1:{ports[0]}/{ports[1]}/{ports[2]}, "
                 f"data in {self.data / 'azurite'}")
        return self.azurite

    def _spawn(self, name: str, args: list[str], log_path: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a child in its own session (Ctrl-C reaches only us; we stop it by PID) and record it."""
        with SIGNALS.deferred():
            if log_path is not None:
                proc = spawn(args, log_path=log_path, env=env, cwd=ROOT)
            else:
                proc = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)
            self.children.append((name, proc))
        return proc

    def _wait_ready(self, name: str, ready: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        wait_until(ready.exists, READY_TIMEOUT, name, proc)
        document: dict[str, Any] = json.loads(ready.read_text(encoding="utf-8"))
        return document

    def spawn_emulator(self) -> tuple[subprocess.Popen[bytes], Path] | None:
        """Start the emulator without waiting for it (it gets ready while Azurite starts)."""
        if importlib.util.find_spec("m365_emulator") is None or \
                importlib.util.find_spec("m365_emulator.__main__") is None:
            self.say("Microsoft 365 emulator: not available yet (m365_emulator has no __main__); "
                     "Graph settings come from the settings file.")
            return None
        ready = self.data / "emulator.json"
        ready.unlink(missing_ok=True)
        (self.data / "logs").mkdir(parents=True, exist_ok=True)
        proc = self._spawn("Microsoft 365 emulator", [
            sys.executable, "-m", "m365_emulator", "--host", "127.0.0.1", "--port", "0",
            "--ready-file", str(ready), "--state-file", str(self.data / "emulator-state.json"),
        ], log_path=self.data / "logs" / "emulator.log")
        return proc, ready

    def wait_emulator(self, started: tuple[subprocess.Popen[bytes], Path] | None) -> dict[str, Any] | None:
        if started is None:
            return None
        emulator = self._wait_ready("Microsoft 365 emulator", started[1], started[0])
        ui = f", control UI at {emulator['ui']}" if emulator.get("ui") else ""
        self.say(f"Microsoft 365 emulator: Graph at {emulator.get('graph')}, sign-in at {emulator.get('authority')}{ui}")
        return emulator

    def start_devhost(self, settings: Path, overrides: dict[str, str], port: int) -> str:
        ready = self.data / "devhost.json"
        ready.unlink(missing_ok=True)
        env = {**os.environ, **overrides}
        # The host's log goes to this terminal, as `func start` does.
        proc = self._spawn("development host", [
            sys.executable, "-m", "devhost", "--settings", str(settings), "--port", str(port),
            "--ready-file", str(ready),
        ], env=env)
        url = str(self._wait_ready("development host", ready, proc)["url"])
        return url

    def stop_all(self) -> None:
        for _, proc in reversed(self.children):
            stop(proc)
        self.children.clear()
        if self.azurite is not None:
            self.azurite.stop()

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return name, int(proc.returncode)
        return None


def _write_atomically(path: Path, document: dict[str, Any], *, private: bool = False) -> None:
    """Readers (tools and tests poll for stack.json) never see a half-written file; `private` files (secrets)
    are never readable by others, not even for a moment."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if private:
        temporary.chmod(0o600)
    temporary.replace(path)


def _load_values(path: Path) -> dict[str, str]:
    from devhost.settings_file import load_local_settings

    return load_local_settings(path).values


def _seed(effective: dict[str, str], emulator: dict[str, Any] | None) -> list[str]:
    try:
        from sync_core.app.demo import seed_demo
    except ImportError:
        return ["Demo data: not available yet (sync_core.app.demo is missing)."]
    from sync_core.bootstrap import build_services
    from sync_core.domain.errors import SettingsError
    from sync_core.settings import load_settings

    try:
        settings = load_settings(effective)
    except SettingsError as exc:
        raise RuntimeError(str(exc)) from None
    lines: list[str] = seed_demo(build_services(settings), emulator)
    return lines


def main() -> int:
    data = data_dir()
    data.mkdir(parents=True, exist_ok=True)
    # stack.json describes a running stack; a stale one from an earlier run must not be mistaken for this one.
    (data / "stack.json").unlink(missing_ok=True)
    stack = Stack(data)
    SIGNALS.install()
    code = 0
    try:
        emulator_starting = stack.spawn_emulator()
        azurite = stack.start_azurite()
        emulator = stack.wait_emulator(emulator_starting)
        http_port = HTTP_PORT if _bindable(HTTP_PORT) else free_port()
        path = settings_file()
        created = not path.exists()
        written = ensure_settings_file(path, generated_settings(azurite.connection_string, emulator, http_port))
        values = _load_values(path)
        overrides = live_overrides(values, azurite.connection_string, emulator, f"http://127.0.0.1:{http_port}")
        if created:
            stack.say(f"Settings: {path} (created with generated secrets)")
        else:
            added = f"; added {', '.join(written)}" if written else ""
            stack.say(f"Settings: {path} (reused{added})")
        url = stack.start_devhost(path, overrides, http_port)
        _write_atomically(data / "stack.json", {
            "devhost": url, "azurite": {"connection_string": azurite.connection_string},
            "emulator": emulator, "pids": {name: proc.pid for name, proc in stack.children}
            | {"azurite": azurite.proc.pid if azurite.proc else None},
        })
        # What the development host sees: the file, overridden by the environment, overridden by the live stack.
        effective = {**values, **os.environ, **overrides}
        for line in _seed(effective, emulator):
            stack.say(line)
        stack.say(f"Open {url}/api/health")
        stack.say("Press Ctrl-C to stop everything.")
        while (exited := stack.first_exited()) is None:
            time.sleep(0.5)
        stack.say(f"The {exited[0]} exited with code {exited[1]}; stopping the rest.")
        code = 1
    except Shutdown:
        stack.say("Stopping...")
    except (RuntimeError, TimeoutError, ValueError) as exc:
        # Start-up failures (a child that exits early, a malformed settings file, SettingsError) are one line.
        stack.say(f"make run failed: {exc}")
        code = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        stack.stop_all()
        (data / "stack.json").unlink(missing_ok=True)
    stack.say("Stopped.")
    return code


if __name__ == "__main__":
    sys.exit(main())
