"""Timer scheduling and queue body decoding, in process (the subprocess tests cover the wiring)."""
from __future__ import annotations

import base64
import threading
from datetime import datetime, timedelta, timezone

import pytest
from azure.functions.timer import TimerRequest

from devhost.catalog import TimerFunction
from devhost.invocation import Invoker
from devhost.ncrontab import CronSchedule
from devhost.queues import decode_body
from devhost.timers import TimerRunner


def test_an_overrunning_timer_fires_once_past_due_then_returns_to_its_schedule() -> None:
    # The clock is the real one plus a skew the function adds to pretend it ran for 3.5 s.
    skew = [timedelta(0)]
    seen: list[tuple[datetime, bool]] = []
    stop = threading.Event()

    def clock() -> datetime:
        return datetime.now(timezone.utc) + skew[0]

    def every_second(timer: TimerRequest) -> None:
        seen.append((clock(), timer.past_due))
        if len(seen) == 1:
            skew[0] += timedelta(seconds=3.5)
        if len(seen) == 3:
            stop.set()

    timer = TimerFunction("every_second", CronSchedule.parse("* * * * * *"), False,
                          Invoker.build("every_second", "timer", every_second))
    runner = TimerRunner(timer, stop, clock=clock)
    runner.start()
    assert runner.join(5), "the timer did not fire three times"
    (first, first_late), (second, second_late), (third, third_late) = seen
    assert (first_late, second_late, third_late) == (False, True, False)
    # The missed occurrence ran at once; the next one waited for its own whole second.
    assert second - first >= timedelta(seconds=3.5)
    assert third.microsecond < 300_000 and third - second <= timedelta(seconds=1.3)


def test_run_on_startup_fires_before_the_first_occurrence() -> None:
    stop = threading.Event()
    seen: list[bool] = []

    def yearly(timer: TimerRequest) -> None:
        seen.append(timer.past_due)
        stop.set()

    timer = TimerFunction("yearly", CronSchedule.parse("0 0 0 1 1 *"), True, Invoker.build("yearly", "timer", yearly))
    runner = TimerRunner(timer, stop)
    runner.start()
    assert runner.join(2)
    assert seen == [False]


def test_queue_bodies_decode_per_message_encoding() -> None:
    assert decode_body(base64.b64encode("héllo".encode()).decode(), "base64") == "héllo".encode()
    assert decode_body("plain {json}", "none") == b"plain {json}"
    with pytest.raises(ValueError, match="not valid base64"):
        decode_body("plain text!", "base64")


def test_invoker_refuses_parameters_it_cannot_fill() -> None:
    def needs_more(req: object, other: object) -> None:
        return None

    with pytest.raises(ValueError, match="parameter 'other' has no binding"):
        Invoker.build("needs_more", "req", needs_more)
    with pytest.raises(ValueError, match="trigger binding 'msg' is not a parameter"):
        Invoker.build("needs_more", "msg", needs_more)
