"""Timer triggers: one thread per timer function, firing on its NCRONTAB schedule (UTC, as Azure by default).

Invocations of one timer never overlap (the Functions host holds a singleton lock per timer). When an
invocation overruns the next occurrence, that occurrence fires at once with `past_due=True` and any further
missed ones are skipped. There is no schedule monitor (`use_monitor`): occurrences missed while devhost was not
running are not replayed at start-up.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from azure.functions.timer import TimerRequest

from devhost.catalog import TimerFunction
from devhost.invocation import FunctionTimeoutError

log = logging.getLogger("devhost")

# Waking this much after the due time still counts as on time.
PAST_DUE_GRACE = timedelta(seconds=1)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


class TimerRunner:
    def __init__(self, timer: TimerFunction, stop: threading.Event,
                 clock: Callable[[], datetime] = _utc_now, function_timeout: float | None = None) -> None:
        self.timer = timer
        self.function_timeout = function_timeout
        self.stop = stop
        self.clock = clock
        self.last_fired: datetime | None = None
        self.thread = threading.Thread(target=self._run, name=f"timer-{timer.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _fire(self, due: datetime | None, past_due: bool, reason: str) -> None:
        fired = self.clock()
        upcoming = self.timer.schedule.next_after(max(fired, due) if due else fired)
        request = TimerRequest(
            past_due=past_due,
            schedule_status={"Last": _iso(self.last_fired), "Next": _iso(upcoming), "LastUpdated": _iso(fired)},
            schedule={"AdjustForDST": True},
        )
        self.last_fired = fired
        try:
            self.timer.invoker.call(request, reason, timeout=self.function_timeout)
        except FunctionTimeoutError:
            # Logged by the invoker. The schedule carries on; the abandoned run may still overlap the next one,
            # where Azure would have restarted the worker.
            return
        except Exception:
            log.exception("Timer function '%s' failed", self.timer.name)

    def _run(self) -> None:
        log.info("Timer '%s': schedule '%s' (UTC), next at %s", self.timer.name, self.timer.schedule.expression,
                 _iso(self.timer.schedule.next_after(self.clock())))
        if self.timer.run_on_startup and not self.stop.is_set():
            self._fire(None, past_due=False, reason="RunOnStartup")
        after = self.clock()
        while not self.stop.is_set():
            due = self.timer.schedule.next_after(after)
            if due is None:
                log.warning("Timer '%s': schedule '%s' never fires again", self.timer.name,
                            self.timer.schedule.expression)
                return
            # Sleep in the stop event so shutdown interrupts the wait; re-check the wall clock on waking.
            while (remaining := (due - self.clock()).total_seconds()) > 0:
                if self.stop.wait(remaining):
                    return
            late = self.clock() - due > PAST_DUE_GRACE
            self._fire(due, past_due=late, reason="Timer fired" if not late else "Timer past due")
            # Skip occurrences missed while a past-due run caught up; otherwise carry on from this one.
            after = self.clock() if late else due
