"""CRM tenants and their plan: the integration is for paid plans only.

The CRM owns the plan and mirrors each tenant here. A tenant with no record is treated as free: the
integration fails closed, so a tenant the CRM never told us about gets the "needs a paid plan" page
and no Microsoft call.
"""
from __future__ import annotations

from enum import StrEnum

from sync_core.domain.models import Frozen


class Plan(StrEnum):
    FREE = "free"
    PAID = "paid"


class Tenant(Frozen):
    id: str
    name: str = ""
    plan: Plan = Plan.FREE

    @property
    def integration_allowed(self) -> bool:
        return self.plan is Plan.PAID
