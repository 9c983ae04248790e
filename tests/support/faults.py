"""Injected failures for the in-memory adapters (test-only): whole calls that fail before or after their write
took effect, batch items that fail one by one, and simulated process deaths.

`with_faults(*methods)` wraps the named methods of a Memory* subclass so that each counts its calls and
checks the armed faults on the way in and (with `after_write`) on the way out; the memory adapters
themselves know nothing of this.
"""
from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class SimulatedCrash(BaseException):
    """The process died here. A BaseException, so no `except Exception` in the code under test catches it."""


@dataclass
class Fault:
    """Raise `error` on the next `times` calls of `method` (matching `when`, if given). With `after_write`
    the call's writes happen first: the caller cannot tell whether it worked (a timeout, a crash)."""

    method: str
    error: BaseException
    after_write: bool = False
    times: int = 1
    when: Callable[..., bool] | None = None


class Faults:
    def __init__(self) -> None:
        self._armed: list[Fault] = []

    def inject(self, method: str, error: BaseException, *, after_write: bool = False, times: int = 1,
               when: Callable[..., bool] | None = None) -> None:
        self._armed.append(Fault(method, error, after_write, times, when))

    def clear(self) -> None:
        self._armed.clear()

    def check(self, method: str, after_write: bool, *args: Any) -> None:
        for fault in self._armed:
            if fault.method != method or fault.after_write != after_write or fault.times <= 0:
                continue
            if fault.when is not None and not fault.when(*args):
                continue
            fault.times -= 1
            raise fault.error


@dataclass
class ItemFault:
    status: int
    retry_after: float | None
    error: str
    times: int


class Faulty:
    """What a fake adds to a memory adapter: call counts, armed faults, per-item failures."""

    def _init_faults(self) -> None:
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self._item_faults: dict[str, ItemFault] = {}
        self._quiet = False

    def _enter(self, method: str, *args: Any) -> None:
        self.calls[method] += 1
        if not self._quiet:
            self.faults.check(method, False, *args)

    def _leave(self, method: str, *args: Any) -> None:
        if not self._quiet:
            self.faults.check(method, True, *args)

    @contextmanager
    def _unfaulted(self) -> Iterator[None]:
        """A user of the system at work: injected faults are meant for the sync, not for test setup."""
        lock = getattr(self, "_lock", None)
        with lock if lock is not None else nullcontext():
            self._quiet = True
            try:
                yield
            finally:
                self._quiet = False

    def fail_item(self, key: str, status: int = 429, *, retry_after: float | None = 1.0, error: str = "",
                  times: int = 1) -> None:
        """The next `times` batch writes keyed `key` (CRM id for creates, Graph id otherwise) fail so."""
        self._item_faults[key] = ItemFault(status, retry_after if status in (429, 503) else None,
                                           error or f"HTTP {status}", times)

    def _item_fault(self, key: str) -> ItemFault | None:
        fault = self._item_faults.get(key)
        if fault is None or fault.times <= 0:
            return None
        fault.times -= 1
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()
        self._item_faults.clear()


def with_faults(*methods: str) -> Callable[[type[T]], type[T]]:
    """Wrap each named (inherited) method: count it, check faults before and after it, under the adapter's lock."""
    def decorate(cls: type[T]) -> type[T]:
        for name in methods:
            setattr(cls, name, _faulty(name, getattr(cls, name)))
        return cls
    return decorate


def _faulty(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        lock = getattr(self, "_lock", None)
        with lock if lock is not None else nullcontext():
            self._enter(name, *args)
            result = method(self, *args, **kwargs)
            self._leave(name, *args)
            return result
    return call


def merged(count: int, refused: dict[int, T], passed: list[T]) -> list[T]:
    """The results of a batch in the caller's order: the items refused here, and the rest as the adapter answered."""
    answers = iter(passed)
    return [refused[i] if i in refused else next(answers) for i in range(count)]
