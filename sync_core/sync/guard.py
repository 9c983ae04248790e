"""The mass-delete guard: a run that would delete or unlink more than a share of a user's links holds the
deletions of that side back (a wiped folder or a bad CRM import must not propagate), to be retried."""
from __future__ import annotations

from dataclasses import dataclass

from sync_core.sync.actions import Side


# --- the mass-delete guard ----------------------------------------------------------------------------

@dataclass(frozen=True)
class GuardLimits:
    """A run may delete/unlink at most max(min_items, max_fraction × the user's links) items per side."""

    min_items: int = 20
    max_fraction: float = 0.5
    enabled: bool = True

    def threshold(self, link_count: int) -> int:
        return max(self.min_items, int(self.max_fraction * link_count))


@dataclass(frozen=True)
class DeleteGuard:
    """Which side's deletions a run holds back, with the reason (None: allowed)."""

    crm_reason: str | None = None
    ms_reason: str | None = None

    def reason_for(self, origin: Side) -> str | None:
        return self.crm_reason if origin is Side.CRM else self.ms_reason


def guard_needs_link_count(crm_deletes: int, ms_removals: int, limits: GuardLimits) -> bool:
    """Counting a user's links costs a scan; it is only needed when a run deletes more than the floor."""
    return limits.enabled and max(crm_deletes, ms_removals) > limits.min_items


def mass_delete_guard(crm_deletes: int, ms_removals: int, link_count: int | None, limits: GuardLimits) -> DeleteGuard:
    if not guard_needs_link_count(crm_deletes, ms_removals, limits):
        return DeleteGuard()
    if link_count is None:
        raise ValueError("link_count is needed when deletions exceed the guard's floor")
    limit = limits.threshold(link_count)

    def reason(count: int, side: str) -> str | None:
        if count <= limit:
            return None
        return (f"mass-delete guard: {count} deletions reported by {side} exceed the limit of {limit} "
                f"({limits.max_fraction:.0%} of {link_count} links, at least {limits.min_items}); held back")

    return DeleteGuard(crm_reason=reason(crm_deletes, "the CRM"), ms_reason=reason(ms_removals, "Microsoft"))
