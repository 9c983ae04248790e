"""The development host: one uvicorn server for HTTP triggers plus threads for timers and queue listeners.

Shutdown (SIGINT/SIGTERM): uvicorn stops accepting and drains in-flight requests, timers and queue listeners
stop fetching work and finish what they started, then `serve()` returns.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from devhost.catalog import Catalog, load_catalog
from devhost.hostjson import HostConfig, format_timespan
from devhost.http_server import FUNCTION_KEY_SETTING, MASTER_KEY_SETTING, HttpHost, Keys
from devhost.queues import QueueListener
from devhost.timers import TimerRunner

log = logging.getLogger("devhost")


class AppLoadError(RuntimeError):
    """The `module:attribute` app spec does not name a FunctionApp."""


def load_app(spec: str) -> Any:
    """Import `module:attribute` (attribute defaults to `app`) with the working directory importable."""
    module_name, _, attribute = spec.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app", None)
    if app is None or not hasattr(app, "get_functions"):
        raise AppLoadError(f"{spec} is not a FunctionApp (no get_functions())")
    return app


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 7071
    ready_file: Path | None = None
    max_poll_interval: float = 1.0
    shutdown_timeout: float = 30.0


def _write_ready_file(path: Path, document: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document), encoding="utf-8")
    # Readers never see a half-written file.
    temporary.replace(path)


class DevHost:
    def __init__(self, app: Any, config: HostConfig, options: ServeOptions, stop: threading.Event) -> None:
        self.config = config
        self.options = options
        self.stop = stop
        self.catalog: Catalog = load_catalog(app)
        self.keys = Keys.from_environ(os.environ)
        timeout = config.function_timeout
        self.http = HttpHost(self.catalog.http, config.route_prefix, self.keys, function_timeout=timeout)
        max_poll = options.max_poll_interval
        if config.queues.max_polling_interval is not None:
            max_poll = min(max_poll, config.queues.max_polling_interval)
        self.timers = [TimerRunner(timer, stop, function_timeout=timeout) for timer in self.catalog.timers]
        self.listeners: list[QueueListener] = []
        for queue in self.catalog.queues:
            try:
                self.listeners.append(QueueListener(queue, config.queues, stop, max_poll, timeout))
            except ValueError as exc:
                # A malformed connection string: that function is in error, the others still run.
                self.catalog.errors[queue.name] = f"its connection string is invalid: {exc}"
        self.catalog.queues = [q for q in self.catalog.queues if q.name not in self.catalog.errors]
        self.url = ""

    def _describe(self) -> None:
        for name, reason in sorted(self.catalog.errors.items()):
            log.error("The '%s' function is in error: %s", name, reason)
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        lines = ["Functions:"]
        for function in self.http.functions:
            methods = ",".join(sorted(function.methods)) if function.methods else "ALL"
            lines.append(f"  {function.name}: [{methods}] {self.url}{prefix}/{function.route.template.strip('/')}"
                         f" (auth: {function.auth_level})")
        lines += [f"  {timer.name}: timerTrigger '{timer.schedule.expression}'" for timer in self.catalog.timers]
        lines += [f"  {queue.name}: queueTrigger '{queue.queue_name}'" for queue in self.catalog.queues]
        log.info("\n".join(lines))
        timeout = self.config.function_timeout
        log.info("Function timeout: %s", "none" if timeout is None else format_timespan(timeout))
        levels = {function.auth_level for function in self.catalog.http}
        if "function" in levels and not (self.keys.function_key or self.keys.master_key):
            log.warning("Function-level routes answer 401 until %s (or %s) is set", FUNCTION_KEY_SETTING,
                        MASTER_KEY_SETTING)
        if "admin" in levels and not self.keys.master_key:
            log.warning("Admin-level routes answer 401 until %s is set", MASTER_KEY_SETTING)

    async def _serve(self) -> None:
        config = uvicorn.Config(self.http, host=self.options.host, port=self.options.port, lifespan="on",
                                log_config=None, access_log=False,
                                timeout_graceful_shutdown=self.options.shutdown_timeout)
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if serving.done():
            await serving
            raise RuntimeError(f"the HTTP server could not start on {self.options.host}:{self.options.port}")
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.options.host}:{port}"
        self._describe()
        for worker in (*self.timers, *self.listeners):
            worker.start()
        if self.options.ready_file is not None:
            _write_ready_file(self.options.ready_file, {"url": self.url, "pid": os.getpid()})
        log.info("Host started: %s", self.url)
        while not serving.done():
            # uvicorn owns the signal handlers while it serves; mirror its decision to the worker threads.
            if server.should_exit:
                self.stop.set()
            elif self.stop.is_set():
                server.should_exit = True
            await asyncio.wait({serving}, timeout=0.1)
        self.stop.set()
        await serving

    def serve(self) -> None:
        """Run until a signal arrives (or `stop` is set), then shut down gracefully."""
        if self.stop.is_set():
            return
        asyncio.run(self._serve())
        deadline = time.monotonic() + self.options.shutdown_timeout
        for worker in (*self.timers, *self.listeners):
            if not worker.join(max(0.0, deadline - time.monotonic())):
                log.warning("'%s' did not finish within %.0f s of shutdown", worker.thread.name,
                            self.options.shutdown_timeout)
        log.info("Host stopped")
