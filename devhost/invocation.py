"""Calling one user function the way the Python worker does: arguments by binding name, plus `context`.

Sync functions run on a thread (the HTTP server hands them one of its own); async functions run on the caller's
event loop, or on a fresh one when the caller is a plain thread (timers, queue workers).

host.json's functionTimeout applies to every invocation. At the deadline the invocation fails
(FunctionTimeoutError) and the caller settles its trigger at once: the HTTP caller gets a 500, the queue
message is released for retry, the timer logs the failure. An async function is cancelled, as Azure cancels
the invocation. A sync function cannot be stopped: Python has no safe way to kill a thread, and Azure's answer,
restarting the worker process, would take every other invocation with it. So it runs on, on a daemon thread
(it never holds the process open at exit), and whatever it returns or raises later is ignored and only logged.
Unlike Azure, side effects it makes after the deadline still happen.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions import _abc as azf_abc  # the abstract TraceContext/RetryContext are not re-exported

from devhost.hostjson import format_timespan

log = logging.getLogger("devhost")


class FunctionTimeoutError(Exception):
    """The invocation ran past functionTimeout; what it does afterwards has no effect on its trigger."""


def start_daemon(target: Callable[[], None], name: str) -> threading.Thread:
    # Daemon: a function abandoned at its deadline must not keep devhost from exiting.
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


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
        self.bind_thread()

    def bind_thread(self) -> None:
        """The worker sets thread_local_storage.invocation_id on the thread that runs the function."""
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

    def _arguments(self, trigger_value: object, retry_count: int) -> tuple[dict[str, object], InvocationContext]:
        kwargs: dict[str, object] = {self.trigger_param: trigger_value}
        context = InvocationContext(self.function_name, str(Path.cwd()), retry_count)
        if self.wants_context:
            kwargs["context"] = context
        return kwargs, context

    def _run_sync(self, kwargs: dict[str, object], context: InvocationContext) -> Any:
        context.bind_thread()
        return self.user_function(**kwargs)

    def call(self, trigger_value: object, reason: str, retry_count: int = 0, timeout: float | None = None) -> Any:
        """Run to completion, or until `timeout` seconds (None: no limit); exceptions propagate after being
        logged, FunctionTimeoutError at the deadline."""
        kwargs, context = self._arguments(trigger_value, retry_count)
        started = self._started(reason, context.invocation_id)
        try:
            if timeout is None:
                result = asyncio.run(self.user_function(**kwargs)) if self.is_async else self._run_sync(kwargs, context)
            else:
                result = self._call_with_deadline(kwargs, context, started, timeout)
        except Exception:
            self._finished(context.invocation_id, started, failed=True)
            raise
        self._finished(context.invocation_id, started, failed=False)
        return result

    def _call_with_deadline(self, kwargs: dict[str, object], context: InvocationContext, started: float,
                            timeout: float) -> Any:
        deadline = started + timeout
        outcome: Future[Any] = Future()

        def run() -> None:
            try:
                if self.is_async:
                    # Cancelled at the deadline, on its own loop, as Azure cancels the invocation.
                    result = asyncio.run(asyncio.wait_for(self.user_function(**kwargs),
                                                          max(0.0, deadline - time.monotonic())))
                else:
                    result = self._run_sync(kwargs, context)
            except BaseException as exc:  # handed to the waiting thread, which raises it as the function would
                outcome.set_exception(exc)
            else:
                outcome.set_result(result)

        start_daemon(run, f"invoke-{self.function_name}")
        done, _ = wait([outcome], timeout=max(0.0, deadline - time.monotonic()))
        # Past the deadline the outcome does not count even if it just arrived (an async function's own
        # wait_for can fire a moment before this wait returns).
        if not done or time.monotonic() >= deadline:
            outcome.add_done_callback(self._late_outcome(context.invocation_id, deadline))
            raise self._timed_out(context.invocation_id, timeout)
        return outcome.result()

    async def call_async(self, trigger_value: object, reason: str, run_sync: Callable[..., Any],
                         timeout: float | None = None) -> Any:
        """From an event loop: await async functions here, hand sync ones to `run_sync` (a thread);
        FunctionTimeoutError after `timeout` seconds (None: no limit)."""
        kwargs, context = self._arguments(trigger_value, 0)
        started = self._started(reason, context.invocation_id)
        if self.is_async:
            work = asyncio.ensure_future(self.user_function(**kwargs))
        else:
            work = asyncio.ensure_future(run_sync(lambda: self._run_sync(kwargs, context)))
        try:
            try:
                done, _ = await asyncio.wait({work}, timeout=timeout)
            except asyncio.CancelledError:
                work.cancel()  # the request itself was abandoned (server shutdown)
                raise
            if timeout is not None and not done:
                if self.is_async:
                    work.cancel()
                # A sync function's thread runs on, unheard (see the module's docstring); the callback reports
                # how it ended once it does.
                work.add_done_callback(self._late_outcome(context.invocation_id, started + timeout))
                raise self._timed_out(context.invocation_id, timeout)
            result = work.result()
        except Exception:
            self._finished(context.invocation_id, started, failed=True)
            raise
        self._finished(context.invocation_id, started, failed=False)
        return result

    def _timed_out(self, invocation_id: str, timeout: float) -> FunctionTimeoutError:
        limit = format_timespan(timeout)
        log.error("Timeout value of %s exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.",
                  limit, self.function_name, invocation_id)
        return FunctionTimeoutError(
            f"Timeout value of {limit} was exceeded by function: Functions.{self.function_name}")

    def _late_outcome(self, invocation_id: str, deadline: float) -> Callable[[Any], None]:
        """A done-callback for abandoned work: say how it ended, and retrieve its exception so nothing warns
        about an unretrieved one."""

        def report(work: Any) -> None:
            ending = "was cancelled" if work.cancelled() else \
                f"raised {type(work.exception()).__name__}" if work.exception() is not None else "returned"
            log.warning("Function 'Functions.%s' (Id=%s) %s %.1f s after its timeout; that outcome is ignored",
                        self.function_name, invocation_id, ending, time.monotonic() - deadline)

        return report

    def _started(self, reason: str, invocation_id: str) -> float:
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", self.function_name, reason, invocation_id)
        return time.monotonic()

    def _finished(self, invocation_id: str, started: float, *, failed: bool) -> None:
        outcome = "Failed" if failed else "Succeeded"
        millis = int((time.monotonic() - started) * 1000)
        log_at = log.error if failed else log.info
        log_at("Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)", self.function_name, outcome, invocation_id,
               millis)
