"""Every 5 minutes: a sync message per connected user, subscription renewals, nonce clean-up."""
from __future__ import annotations

import azure.functions as func

from sync_core.app import freshness
from sync_core.bootstrap import build_services

bp = func.Blueprint()


@bp.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
def sync_timer(timer: func.TimerRequest) -> None:
    freshness.tick(build_services())
