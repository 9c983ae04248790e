"""One queued sync job: the user's sync under their lease (coalesced), then owed subscriptions."""
from __future__ import annotations

import azure.functions as func

from sync_core.app import freshness
from sync_core.bootstrap import build_services

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%SYNC_QUEUE_NAME%", connection="AzureWebJobsStorage")
def sync_worker(msg: func.QueueMessage) -> None:
    freshness.run_job(build_services(), msg.get_body())
