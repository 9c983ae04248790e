"""What an operator sees: one JSON log line per event (user, run id, outcome; ids only, no personal data, no
secrets) from the worker, the run and the webhook, and `python -m sync_core status` / `status --user`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from sync_core.domain.models import CrmContact, RunOutcome
from sync_core.domain.subscriptions import Kind
from tests.faults.matrix import Connector, User
from tests.functions.log_hygiene import leaked_secrets
from tests.functions.stack import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _json_lines(user: User) -> list[dict[str, Any]]:
    lines = []
    for line in user.stack.devhost.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # every structured line is one whole JSON document
    return lines


def _table(stdout: str) -> list[dict[str, str]]:
    """The status table's rows as {column: text}, cut at the header's column positions."""
    lines = stdout.splitlines()
    header = lines[0]
    names = ["tenant", "user", "state", "mode", "last success", "last run", "last error", "quarantined",
             "subscriptions"]
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines[2:]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
        rows.append(dict(zip(names, cells)))
    return rows


def _status(user: User, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sync_core", "status", *args], capture_output=True, text=True,
                          env={**os.environ, **user.stack.stack.env}, cwd=ROOT, timeout=120)


def test_run_worker_and_webhook_log_one_line_per_event_with_ids_and_no_personal_data(connect: Connector) -> None:
    user = connect(contacts=0)
    stack = user.stack
    marker = uuid.uuid4().hex[:8]
    personal = {"first": f"Zebedee{marker}", "last": f"Quixote{marker}", "email": f"zq.{marker}@example.com",
                "title": f"Chief Marmalade Officer {marker}", "phone": "+44 20 7946 0999"}
    stack.services.crm.create_contact(CrmContact(
        id="", tenant_id=user.tenant_id, account_id=user.account_id, first_name=personal["first"],
        last_name=personal["last"], emails=(personal["email"],), job_title=personal["title"],
        business_phone=personal["phone"]))
    run = user.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 1, run
    wait_for(lambda: (r := stack.services.subscriptions.get(user.tenant_id, user.user_id, Kind.CONTACTS))
             and not r.owed, 30, "the subscription")
    (item,) = user.folder_items()
    edit = f"Edited in Outlook {marker}"
    assert user.outlook.request("PATCH", f"/contacts/{item['id']}", {"personalNotes": edit}).status_code == 200
    wait_for(lambda: any(c.notes == edit for c in user.crm_contacts()), 30, "the webhook-driven sync")

    lines = _json_lines(user)
    ours = [line for line in lines if line.get("user") == user.user_id]
    for line in lines:
        if line["logger"].startswith("sync_core"):
            assert {"ts", "level", "logger", "message", "event"} <= set(line), line
    # The run: one line per run, with its id, outcome and counts.
    runs = [line for line in ours if line["event"] == "run"]
    assert any(line["run_id"] == run.run_id and line["outcome"] == "succeeded" and line["ms_created"] == 1
               for line in runs), runs
    # The worker: one line per job, naming the run it ran.
    assert any(line["event"] == "job" and line["run_id"] == run.run_id for line in ours), ours
    # The webhook: the notification's user was enqueued (or found already queued), said so with the reason.
    assert any(line["event"] in ("enqueue", "enqueue_coalesced") and line["reason"] == "webhook" for line in ours)
    assert any(line["event"] == "webhook" for line in lines)
    text = stack.devhost.log_path.read_text(encoding="utf-8", errors="replace")
    for value in (*personal.values(), edit):
        assert value not in text, f"personal data in the worker's log: {value}"
    stack.stack.remember_tokens(user.tenant_id, user.user_id)
    assert leaked_secrets(stack.stack) == []


def test_status_lists_every_user_and_details_one_with_its_quarantine(connect: Connector) -> None:
    healthy, troubled = connect(contacts=1), connect(contacts=0)
    stack = troubled.stack
    stack.control.add_fault(method="POST", path_regex=r"^/me/contactFolders/[^/]+/contacts$", status=400,
                            code="ErrorInvalidProperty", message="The property is invalid.", times=1, in_batch=True)
    troubled.add_contacts(1)
    run = troubled.sync()
    assert run.quarantined == 1 and run.outcome is RunOutcome.PARTIAL, run
    rejected = troubled.created[-1]

    table = _status(troubled)
    assert table.returncode == 0, table.stderr
    rows = {row["user"]: row for row in _table(table.stdout)}
    assert {healthy.user_id, troubled.user_id} <= set(rows)
    assert rows[healthy.user_id]["state"] == "connected" and rows[healthy.user_id]["last run"].startswith("succeeded")
    assert rows[healthy.user_id]["last success"] != "-"
    assert rows[healthy.user_id]["subscriptions"].startswith("contacts until ")  # when it expires
    assert rows[troubled.user_id]["last run"].startswith("partial") and rows[troubled.user_id]["quarantined"] == "1"
    assert "poison queue" in table.stdout

    detail = _status(troubled, "--user", troubled.user_id)
    assert detail.returncode == 0, detail.stderr
    assert f'"run_id": "{run.run_id}"' in detail.stdout
    assert f"crm {rejected}:" in detail.stdout and "400" in detail.stdout
    report = json.loads(_status(troubled, "--json").stdout)
    mine = next(u for u in report["users"] if u["user_id"] == troubled.user_id)
    assert mine["quarantined"][0]["record_id"] == rejected and mine["latest_run"]["outcome"] == "partial"
    missing = _status(troubled, "--user", "nobody-" + uuid.uuid4().hex[:6])
    assert missing.returncode == 1 and "no connection" in missing.stderr
