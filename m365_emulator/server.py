"""Running the emulator: the servers inside the process (`serve`), and the process seen from outside
(`EmulatorProcess`, used by tests and tools, with `ControlClient` for the control API).

One process serves Graph and the control API over HTTP on one port and, when `m365_emulator.identity` and
`m365_emulator.tls` are present, the identity platform over HTTPS on a second port (MSAL refuses http
authorities). When both listen, it writes the ready file atomically:
  {"graph": "http://H:P/v1.0", "control": "http://H:P/_emulator", "ui": "http://H:P/_emulator/ui",
   "authority": "https://H:Q/<tenant>" | null, "ca_file": "..." | null, "tenant_id": "...", "pid": N}

This module imports only the standard library at the top: test processes import it without loading the
server stack.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("m365_emulator")

PACKAGE_PARENT = Path(__file__).resolve().parent.parent


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 0
    ready_file: Path | None = None
    state_file: Path | None = None
    throttle_limit: int | None = None
    throttle_window: float | None = None
    max_concurrency: int | None = None
    delta_retention_seconds: float | None = None
    tls_dir: Path | None = None
    log_level: str = "warning"


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _identity_builders() -> tuple[Any, Any, str | None]:
    """(build_identity_app, make_tls_files, problem): both None when the identity modules are absent or broken."""
    try:
        from m365_emulator.identity import build_identity_app
        from m365_emulator.tls import make_tls_files
    except ModuleNotFoundError as exc:
        if exc.name in ("m365_emulator.identity", "m365_emulator.tls"):
            return None, None, None
        log.exception("the identity platform could not be loaded; serving Graph only")
        return None, None, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a half-finished identity module must not take Graph down with it
        log.exception("the identity platform could not be loaded; serving Graph only")
        return None, None, f"{type(exc).__name__}: {exc}"
    return build_identity_app, make_tls_files, None


async def serve(opts: Options) -> None:
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from m365_emulator.app import TRANSPORTS, build_app, build_emulator
    from m365_emulator.core import Core
    from m365_emulator.persist import Persister
    from m365_emulator.throttle import ThrottleConfig

    class DroppableH11(H11Protocol):
        """h11 protocol that lets the app find its connection, so an injected fault can really drop it."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.client:
                TRANSPORTS[tuple(self.client)] = transport  # type: ignore[arg-type]

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client:
                TRANSPORTS.pop(tuple(self.client), None)  # type: ignore[arg-type]
            super().connection_lost(exc)

    class QuietServer(uvicorn.Server):
        """Signals are handled once for all servers of the process (below), not by each server."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    throttle = ThrottleConfig()
    if opts.throttle_limit is not None:
        throttle.limit = opts.throttle_limit
    if opts.throttle_window is not None:
        throttle.window_seconds = opts.throttle_window
    if opts.max_concurrency is not None:
        throttle.max_concurrency = opts.max_concurrency
    core = Core()
    emu = build_emulator(core, throttle, opts.delta_retention_seconds)
    persister = Persister(opts.state_file, emu) if opts.state_file else None
    if persister is not None and persister.load():
        log.info("state restored from %s", opts.state_file)

    graph_sock = _bind(opts.host, opts.port)
    graph_port = graph_sock.getsockname()[1]
    servers: list[tuple[Any, socket.socket]] = [(QuietServer(uvicorn.Config(
        build_app(emu, persister), http=DroppableH11, lifespan="on", log_level=opts.log_level, access_log=False,
        timeout_graceful_shutdown=5)), graph_sock)]

    authority = ca_file = None
    temporary_tls: Path | None = None
    build_identity_app, make_tls_files, identity_error = _identity_builders()
    if build_identity_app is not None:
        # Beside the state file, the CA outlives restarts, so clients configured with ca_file keep trusting it.
        tls_dir = opts.tls_dir or (opts.state_file.with_name(opts.state_file.name + ".tls") if opts.state_file
                                   else None)
        if tls_dir is None:
            tls_dir = temporary_tls = Path(tempfile.mkdtemp(prefix="m365emu-tls-"))
        tls = make_tls_files(tls_dir, opts.host)
        id_sock = _bind(opts.host, 0)
        servers.append((QuietServer(uvicorn.Config(
            build_identity_app(core), lifespan="auto", log_level=opts.log_level, access_log=False,
            ssl_certfile=str(tls.cert_file), ssl_keyfile=str(tls.key_file), timeout_graceful_shutdown=5)), id_sock))
        authority = f"https://{_url_host(opts.host)}:{id_sock.getsockname()[1]}/{core.tenant_id}"
        ca_file = str(tls.ca_file)

    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)

    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        if any(t.done() for t in tasks):
            stop()
            await asyncio.gather(*tasks)
            raise SystemExit("the emulator failed to start")
        await asyncio.sleep(0.02)
    base = f"http://{_url_host(opts.host)}:{graph_port}"
    ready: dict[str, Any] = {"graph": f"{base}/v1.0", "control": f"{base}/_emulator", "ui": f"{base}/_emulator/ui",
                             "authority": authority, "ca_file": ca_file, "tenant_id": core.tenant_id, "pid": os.getpid()}
    if identity_error:
        ready["identity_error"] = identity_error
    if emu.module_errors:
        ready["module_errors"] = emu.module_errors
    if opts.ready_file is not None:
        _write_atomically(opts.ready_file, json.dumps(ready, indent=2))
    log.warning("Microsoft 365 emulator ready: %s", json.dumps(ready))
    try:
        await asyncio.gather(*tasks)
    finally:
        if temporary_tls is not None:
            shutil.rmtree(temporary_tls, ignore_errors=True)


def run(opts: Options) -> None:
    logging.basicConfig(level=opts.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(opts))


# ------------------------------------------------------------------------------- seen from outside

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
        import httpx
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
