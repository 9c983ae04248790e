"""Calling one user function the way the Python worker does: arguments by binding name, plus `context`.

Sync functions run on the caller's thread (the HTTP server hands them a worker thread); async functions run on
the caller's event loop, or on a fresh one when the caller is a plain thread (timers, queue workers).
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import _abc as azf_abc  # the abstract TraceContext/RetryContext are not re-exported

log = logging.getLogger("devhost")


class _TraceContext(azf_abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(azf_abc.RetryContext):
    def __init__(self, retry_count: int) -> None:
        self._retry_count = retry_count

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):  # type: ignore[misc]
    """What the worker passes as a `context` parameter."""

    def __init__(self, function_name: str, function_directory: str, retry_count: int = 0) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._retry = _RetryContext(retry_count)
        self._trace = _TraceContext()
        self._local = threading.local()
        self._local.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> _TraceContext:
        return self._trace

    @property
    def retry_context(self) -> _RetryContext:
        return self._retry


@dataclass(frozen=True)
class Invoker:
    """One user function with the name of its trigger parameter."""

    function_name: str
    trigger_param: str
    user_function: Callable[..., Any]
    wants_context: bool

    @classmethod
    def build(cls, function_name: str, trigger_param: str, user_function: Callable[..., Any]) -> "Invoker":
        """Refuse a function whose parameters devhost cannot fill (ValueError, one line)."""
        parameters = inspect.signature(user_function).parameters
        if trigger_param not in parameters:
            raise ValueError(f"its trigger binding '{trigger_param}' is not a parameter of the function")
        for name, parameter in parameters.items():
            if name not in (trigger_param, "context") and parameter.default is inspect.Parameter.empty:
                raise ValueError(f"parameter '{name}' has no binding")
        return cls(function_name, trigger_param, user_function, "context" in parameters)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)

    def _arguments(self, trigger_value: object, retry_count: int) -> tuple[dict[str, object], str]:
        kwargs: dict[str, object] = {self.trigger_param: trigger_value}
        context = InvocationContext(self.function_name, str(Path.cwd()), retry_count)
        if self.wants_context:
            kwargs["context"] = context
        return kwargs, context.invocation_id

    def call(self, trigger_value: object, reason: str, retry_count: int = 0) -> Any:
        """Run to completion on this thread; exceptions propagate after being logged."""
        kwargs, invocation_id = self._arguments(trigger_value, retry_count)
        started = self._started(reason, invocation_id)
        try:
            if self.is_async:
                result = asyncio.run(self.user_function(**kwargs))
            else:
                result = self.user_function(**kwargs)
        except Exception:
            self._finished(invocation_id, started, failed=True)
            raise
        self._finished(invocation_id, started, failed=False)
        return result

    async def call_async(self, trigger_value: object, reason: str, run_sync: Callable[..., Any]) -> Any:
        """From an event loop: await async functions here, hand sync ones to `run_sync` (a thread pool)."""
        kwargs, invocation_id = self._arguments(trigger_value, 0)
        started = self._started(reason, invocation_id)
        try:
            if self.is_async:
                result = await self.user_function(**kwargs)
            else:
                result = await run_sync(lambda: self.user_function(**kwargs))
        except Exception:
            self._finished(invocation_id, started, failed=True)
            raise
        self._finished(invocation_id, started, failed=False)
        return result

    def _started(self, reason: str, invocation_id: str) -> float:
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", self.function_name, reason, invocation_id)
        return time.monotonic()

    def _finished(self, invocation_id: str, started: float, *, failed: bool) -> None:
        outcome = "Failed" if failed else "Succeeded"
        millis = int((time.monotonic() - started) * 1000)
        log_at = log.error if failed else log.info
        log_at("Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)", self.function_name, outcome, invocation_id,
               millis)
