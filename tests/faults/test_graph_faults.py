"""The fault matrix, Graph side: each fault the chaos run injects, alone, with the recovery it must get."""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from sync_core.kinds.contacts.mapping import CRM_ID_PROPERTY
from sync_core.domain.models import RunOutcome
from tests.faults.matrix import GRAPH_TIMEOUT, Connector, User
from tests.functions.stack import wait_for

DELTA = r"^/me/contactFolders/[^/]+/contacts/delta"
SLOW_MS = int((GRAPH_TIMEOUT + 1.5) * 1000)  # past the client's timeout
BATCH = r"^/\$batch$"


def _when(entry: dict[str, Any]) -> datetime:
    return datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _assert_one_each(user: User) -> None:
    """Every CRM contact is in the folder exactly once (by our CrmId tag), and nothing else is."""
    crm = sorted(c.id for c in user.crm_contacts())
    user.outlook.forget_folders()
    folder = user.outlook.folder_id("Really Simple Systems")
    prop = CRM_ID_PROPERTY.replace("'", "''")
    listed = user.outlook.request("GET", f"/contactFolders/{folder}/contacts?$top=999"
                                         f"&$expand=singleValueExtendedProperties($filter=id eq '{prop}')").json()
    tagged = sorted(next((p["value"] for p in item.get("singleValueExtendedProperties") or []), f"untagged:{item['id']}")
                    for item in listed["value"])
    assert tagged == crm, f"Outlook {tagged} != CRM {crm}"


def test_429_with_retry_after_is_waited_out_within_the_run(connect: Connector) -> None:
    user = connect(contacts=1)
    since = user.stack.control.last_request_seq()
    user.stack.control.add_fault(method="GET", path_regex=DELTA, status=429, retry_after=2, times=2, in_batch=False)
    user.add_contacts(2)
    run = user.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 2, (run.error, run.log)
    deltas = [e for e in user.graph_log(since) if "/contacts/delta" in e["path"]]
    statuses = [e["status"] for e in deltas]
    assert 429 in statuses and statuses[-1] == 200, statuses
    for throttled, retried in zip(deltas, deltas[1:]):
        if throttled["status"] == 429:
            # Retry-After: 2 is honoured before the same request goes again (whole-second log times).
            assert (_when(retried) - _when(throttled)).total_seconds() >= 2, (throttled, retried)
    page = user.page_says(": succeeded")
    assert "has stopped" not in page
    _assert_one_each(user)


def test_503_on_a_read_is_retried_with_backoff_in_the_same_run(connect: Connector) -> None:
    user = connect(contacts=1)
    since = user.stack.control.last_request_seq()
    user.stack.control.add_fault(method="GET", path_regex=DELTA, status=503, times=2, in_batch=False)
    user.add_contacts(1)
    run = user.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 1, run
    statuses = [e["status"] for e in user.graph_log(since) if "/contacts/delta" in e["path"]]
    assert statuses.count(503) >= 1 and statuses[-1] == 200, statuses
    user.page_says(": succeeded")


def test_503_on_a_create_batch_is_not_replayed_and_the_next_run_creates_exactly_once(connect: Connector) -> None:
    user = connect(contacts=1)
    since = user.stack.control.last_request_seq()
    user.stack.control.add_fault(method="POST", path_regex=BATCH, status=503, times=1, in_batch=False)
    user.add_contacts(3)
    first = user.sync()
    # The batch's outcome is unknown: the run says so (errors, retried) instead of sending the creates again.
    batches = [e for e in user.graph_log(since) if e["path"] == "/$batch" and not e["in_batch"]]
    assert batches and batches[0]["status"] == 503
    assert first.outcome is RunOutcome.PARTIAL and first.microsoft.errors == 3, first
    user.page_says("will be retried")
    user.sync_until_quiet()
    _assert_one_each(user)
    user.page_says(": succeeded")


def test_a_write_whose_answer_is_lost_is_found_again_not_duplicated(connect: Connector) -> None:
    user = connect(contacts=1)
    before = len(user.folder_items())
    user.stack.control.add_fault(method="POST", path_regex=BATCH, status=500, after=True, times=1, in_batch=False)
    user.add_contacts(4)
    first = user.sync()
    assert len(user.folder_items()) == before + 4  # Graph did the creates; the app never heard back
    assert first.outcome is RunOutcome.PARTIAL, first
    second = user.sync_until_quiet()
    assert second.microsoft.created == 0
    _assert_one_each(user)


def test_a_read_slower_than_the_client_timeout_is_sent_again(connect: Connector) -> None:
    user = connect(contacts=1)
    control = user.stack.control
    since = control.last_request_seq()
    control.add_fault(method="GET", path_regex=DELTA, delay_ms=SLOW_MS, times=1, in_batch=False)
    user.add_contacts(1)
    run = user.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 1, run
    # Logged when answered: the slow one (given up on by the client) after its retry.
    wait_for(lambda: [e for e in user.graph_log(since) if "/contacts/delta" in e["path"] and e["fault_id"]], 10,
             "the slow request to be answered")
    deltas = [e for e in user.graph_log(since) if "/contacts/delta" in e["path"]]
    assert any(e["status"] == 200 and not e["fault_id"] for e in deltas)


def test_a_create_slower_than_the_client_timeout_is_looked_up_once_it_landed(connect: Connector) -> None:
    user = connect(contacts=1)
    before = len(user.folder_items())
    user.stack.control.add_fault(method="POST", path_regex=BATCH, delay_ms=SLOW_MS, times=1, in_batch=False)
    user.add_contacts(3)
    first = user.sync()
    assert first.microsoft.errors == 3 and first.outcome is RunOutcome.PARTIAL, first  # outcome unknown
    wait_for(lambda: len(user.folder_items()) == before + 3, 10, "the slow creates to land")
    second = user.sync()
    assert second.microsoft.created == 0 and any("found in Outlook" in line for line in second.log), second.log
    _assert_one_each(user)


def test_a_create_slower_than_the_client_timeout_is_not_made_twice_when_the_next_run_comes_at_once(
        connect: Connector) -> None:
    user = connect(contacts=1)
    user.stack.control.add_fault(method="POST", path_regex=BATCH, delay_ms=SLOW_MS + 2000, times=1, in_batch=False)
    user.add_contacts(2)
    user.sync()
    user.sync()  # at once, as a coalesced second pass does: the slow creates have not landed yet
    time.sleep(SLOW_MS / 1000 + 2)
    user.sync_until_quiet()
    _assert_one_each(user)


def test_dropped_connections(connect: Connector) -> None:
    user = connect(contacts=1)
    control = user.stack.control
    since = control.last_request_seq()
    # This user's folder only: a timer tick may sync the other users of the session meanwhile.
    folder = re.escape(user.outlook.folder_id("Really Simple Systems")).replace("=", "(?:=|%3D)")
    control.add_fault(method="GET", path_regex=rf"^/me/contactFolders/{folder}/contacts/delta", drop_connection=True,
                      times=1, in_batch=False)
    # Inside a batch: the steps before it ran, then the whole $batch connection is dropped.
    control.add_fault(method="POST", path_regex=rf"^/me/contactFolders/{folder}/contacts$", drop_connection=True,
                      times=1, in_batch=True)
    user.add_contacts(5)
    first = user.sync()
    log = user.graph_log(since)
    assert any(e["dropped"] for e in log if "/contacts/delta" in e["path"])
    assert first.outcome is RunOutcome.PARTIAL, first
    user.sync_until_quiet()
    _assert_one_each(user)


def test_failing_batch_items_are_retried_by_the_next_run(connect: Connector) -> None:
    user = connect(contacts=1)
    control = user.stack.control
    control.add_fault(method="POST", path_regex=r"^/me/contactFolders/[^/]+/contacts$", status=500, times=3,
                      in_batch=True)
    user.add_contacts(6)
    first = user.sync()
    assert first.outcome is RunOutcome.PARTIAL and first.microsoft.created == 3 and first.microsoft.errors == 3, first
    user.page_says("finished; some records could not be synced and will be retried")
    second = user.sync_until_quiet()
    assert second.outcome is RunOutcome.SUCCEEDED
    _assert_one_each(user)
    user.page_says(": succeeded")


def test_an_expired_delta_link_means_a_full_resync_without_duplicates(connect: Connector) -> None:
    user = connect(contacts=3)
    items = user.folder_items()
    edited = items[0]
    assert user.outlook.request("PATCH", f"/contacts/{edited['id']}", {"jobTitle": "Resynced"}).status_code == 200
    user.stack.control.expire_delta_tokens(user.ms["id"])
    run = user.sync()
    assert run.outcome is RunOutcome.SUCCEEDED, run
    assert any("deltaLink expired" in line for line in run.log), run.log
    assert (run.microsoft.created, run.crm.created) == (0, 0)
    assert any(c.job_title == "Resynced" for c in user.crm_contacts())
    _assert_one_each(user)


def test_token_expiry_is_healed_by_the_refresh_token_and_the_rotated_cache_is_saved(connect: Connector) -> None:
    user = connect(contacts=1)
    stack = user.stack
    before = stack.services.tokens.load(user.tenant_id, user.user_id)
    since = stack.control.last_request_seq()
    stack.control.advance_clock(3700)  # past the access token's hour
    user.add_contacts(1)
    run = user.sync()
    assert run.outcome is RunOutcome.SUCCEEDED and run.microsoft.created == 1, run
    # A request with an expired token names no user in the log: the app's own requests since, by client id.
    statuses = [e["status"] for e in stack.control.requests(since=since)
                if e.get("client_id") == stack.settings.client_id and e.get("user_id") in (None, user.ms["id"])]
    assert 401 in statuses and statuses[-1] in (200, 201), statuses
    assert stack.services.tokens.load(user.tenant_id, user.user_id) != before  # new tokens kept
    user.page_says(": succeeded")


def test_a_revoked_user_needs_to_reconnect_and_nobody_else_is_affected(connect: Connector) -> None:
    revoked, other = connect(contacts=1), connect(contacts=1)
    stack = revoked.stack
    stack.control.revoke(revoked.ms["id"])
    stack.control.advance_clock(3700)  # the access token it still holds expires: the refresh token is dead
    started = revoked.enqueue()
    other.add_contacts(1)
    other_run = other.sync()
    run = revoked.wait_run(started)
    assert run.outcome is RunOutcome.RECONNECT_NEEDED, run
    connection = stack.services.connections.get(revoked.tenant_id, revoked.user_id)
    assert connection is not None and connection.status.value == "reconnect_needed"
    page = revoked.page()
    assert "has stopped" in page and "Reconnect" in page
    assert other_run.outcome is RunOutcome.SUCCEEDED and other_run.microsoft.created == 1
    assert "has stopped" not in other.page()
    # The timer no longer sends jobs for it; the others still get theirs.
    connected = set(stack.services.connections.iter_connected())
    assert (revoked.tenant_id, revoked.user_id) not in connected and (other.tenant_id, other.user_id) in connected


def test_a_failed_lookup_of_a_lost_create_never_imports_our_own_item(connect: Connector) -> None:
    """Found by the malformed-answer property test: the creates went through but their answer was lost, and
    the next run's lookup by our tag failed too. The new items then also came through delta as "new in
    Outlook" and were imported into the CRM: every contact twice on both sides."""
    user = connect(contacts=1)
    before = len(user.crm_contacts())
    control = user.stack.control
    control.add_fault(method="POST", path_regex=BATCH, status=500, after=True, times=1, in_batch=False)
    user.add_contacts(3)
    assert user.sync().outcome is RunOutcome.PARTIAL
    control.add_fault(method="GET", path_regex=r"/contacts\?\$filter=singleValueExtendedProperties", status=400,
                      times=3, in_batch=False)
    held = user.sync()
    assert held.crm.created == 0, "our own new items were imported as CRM contacts"
    user.sync_until_quiet()
    assert len(user.crm_contacts()) == before + 3
    _assert_one_each(user)
