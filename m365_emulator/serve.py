"""The servers inside the emulator process (`python -m m365_emulator`): Graph and the control API over HTTP on one
port, the identity platform over HTTPS on a second port (MSAL refuses http authorities). When both listen, it
writes the ready file atomically:
  {"graph": "http://H:P/v1.0", "control": "http://H:P/_emulator", "ui": "http://H:P/_emulator/ui",
   "authority": "https://H:Q/<tenant>", "ca_file": "...", "tenant_id": "...", "pid": N}
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from m365_emulator.app import TRANSPORTS, build_app, build_emulator
from m365_emulator.identity.app import build_identity_app
from m365_emulator.kernel.core import Core
from m365_emulator.kernel.persist import Persister
from m365_emulator.kernel.throttle import ThrottleConfig
from m365_emulator.tls import make_tls_files

log = logging.getLogger("m365_emulator")


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


async def serve(opts: Options) -> None:
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

    temporary_tls: Path | None = None
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
