"""Found by the chaos run (seed 6): settings saved while a sync is running must still take effect.

Changing the sync mode or the contact scope asks the next sync to look at every record again (the settings
page resets the user's cursor). A run that started before, on the old settings, used to write its own cursor
over that reset when it finished, so the re-evaluation never happened: here, Outlook contacts made while the
mode was crm_to_microsoft were never imported after switching to two-way.
"""
from __future__ import annotations

from sync_core.domain.models import RunOutcome, SyncMode
from sync_core.web.settings_form import form_values
from tests.faults.matrix import Connector
from tests.faults.test_graph_faults import DELTA
from tests.functions.stack import wait_for


def test_a_mode_switch_during_a_running_sync_still_imports_what_the_old_mode_skipped(connect: Connector) -> None:
    user = connect(contacts=1, mode=SyncMode.CRM_TO_MICROSOFT)
    stack = user.stack
    folder = user.outlook.folder_id("Really Simple Systems")
    made = user.outlook.request("POST", f"/contactFolders/{folder}/contacts",
                                {"givenName": "Skipped", "surname": "Bythe Oldmode", "companyName": "Contoso Ltd"})
    assert made.status_code == 201
    skipped = user.sync()  # crm_to_microsoft: not imported, and the deltaLink moves past it
    assert skipped.crm.created == 0
    # The next run spends a while in its delta request; the switch to two-way lands meanwhile.
    stack.control.add_fault(method="GET", path_regex=DELTA, delay_ms=1500, times=1, in_batch=False)
    started = user.enqueue()
    wait_for(lambda: any(r.started_at >= started and r.outcome is RunOutcome.RUNNING for r in user.runs(5)), 20,
             "the run to start")
    connection = stack.services.connections.get(user.tenant_id, user.user_id)
    assert connection is not None
    wanted = connection.settings.model_copy(update={"mode": SyncMode.TWO_WAY})
    user.web.launch(user.tenant_id, user.user_id)
    saved = user.web.post_form("/api/settings", {**form_values(wanted), "csrf": user.web.csrf()})
    assert saved.status_code == 303
    user.wait_run(started)
    user.sync_until_quiet()
    assert any(c.first_name == "Skipped" for c in user.crm_contacts()), "the two-way switch never imported it"
