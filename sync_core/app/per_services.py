"""One helper object per Services (a store that opens its table once), kept on the Services itself."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sync_core.bootstrap import Services

T = TypeVar("T")


def per_services(services: Services, attribute: str, make: Callable[[Services], T]) -> T:
    """`make(services)` the first time, the same object every later time (stored as `attribute`)."""
    existing: T | None = getattr(services, attribute, None)
    if existing is None:
        existing = make(services)
        setattr(services, attribute, existing)
    return existing
