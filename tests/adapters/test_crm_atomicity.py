"""TableCrm writes a record and its feed entry atomically: a failed or interrupted write leaves
neither, so the change feed can never miss a change (against the session's Azurite)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from azure.data.tables import TableServiceClient

from sync_core.adapters.tables.crm import COUNTER_ROW, FEED_PREFIX, TABLE, TableCrm
from sync_core.adapters.tables.common import as_int, unescape_key_part
from sync_core.domain.errors import InvalidRecordError
from sync_core.domain.models import CrmContact
from sync_core.settings import AppSettings
from sync_core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]

# The child writes until it is killed: creates, then repeated edits that count themselves in
# job_title, so the parent can tell how many feed entries each surviving record must have.
CHILD = """
import sys
from sync_core.adapters.tables.crm import TableCrm
from sync_core.domain.models import CrmContact
crm = TableCrm(sys.argv[1], lambda base: sys.argv[2] + base)
account = crm.create_account("t1", "Engines", None)
contacts = []
step = 0
while True:
    step += 1
    if step % 3 == 1 or not contacts:
        contacts.append(crm.create_contact(CrmContact(id=f"c{step}", tenant_id="t1", account_id=account.id,
                                                      job_title="edit-0")))
    else:
        index = step % len(contacts)
        current = contacts[index]
        edits = int(current.job_title.split("-")[1]) + 1
        contacts[index] = crm.update_contact(current.model_copy(update={"job_title": f"edit-{edits}"}))
    print(step, flush=True)
"""


@pytest.fixture
def crm(app_env: dict[str, str]) -> TableCrm:
    return TableCrm.from_settings(load_settings(app_env))


def feed_and_counter(crm: TableCrm, tenant: str) -> tuple[list[int], int]:
    positions = [e.position for e in crm.read_changes(tenant, 0, limit=1000).entries]
    counter = crm._table.get(tenant, COUNTER_ROW)  # noqa: SLF001 - the invariant is about this row
    return positions, 0 if counter is None else as_int(counter["Position"])


def test_rejected_record_leaves_neither_record_nor_feed_entry(crm: TableCrm) -> None:
    account = crm.create_account("t1", "Engines", None)
    ok = crm.create_contact(CrmContact(id="ok", tenant_id="t1", account_id=account.id))
    positions_before, counter_before = feed_and_counter(crm, "t1")

    # Operation 3 of the transaction (the record) is rejected by storage: > 32K characters.
    with pytest.raises(InvalidRecordError):
        crm.create_contact(CrmContact(id="huge", tenant_id="t1", account_id=account.id, notes="x" * 40_000,
                                      emails=("huge@example.com",)))
    with pytest.raises(InvalidRecordError):
        crm.update_contact(ok.model_copy(update={"notes": "y" * 40_000, "emails": ("ok@example.com",)}))

    assert crm.get_contacts("t1", ["huge"]) == {}
    assert crm.get_contacts("t1", ["ok"])["ok"] == ok
    assert crm.find_contacts_by_email("t1", account.id, "huge@example.com") == []
    assert crm.find_contacts_by_email("t1", account.id, "ok@example.com") == []
    assert feed_and_counter(crm, "t1") == (positions_before, counter_before)

    # The next write takes the very next position: the failure left no hole in the feed.
    crm.create_contact(CrmContact(id="after", tenant_id="t1", account_id=account.id))
    positions, counter = feed_and_counter(crm, "t1")
    assert positions == positions_before + [counter_before + 1] and counter == counter_before + 1


@pytest.mark.slow
def test_a_writer_killed_mid_stream_never_leaves_a_record_without_its_feed_entry(
    app_env: dict[str, str], crm: TableCrm
) -> None:
    settings = load_settings(app_env)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, settings.storage_connection_string, settings.storage_prefix],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        steps = 0
        deadline = time.monotonic() + 20
        while steps < 40 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            steps = int(line)
        assert steps >= 40, child.stderr.read() if child.stderr else "child stopped"
        time.sleep(0.013)  # land the kill somewhere inside a later write
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)

    entries = crm.read_changes("t1", 0, limit=1000).entries
    positions, counter = feed_and_counter(crm, "t1")
    assert positions == list(range(1, len(positions) + 1)) and counter == len(positions)
    per_contact = Counter(e.record_id for e in entries if e.kind == "contact")
    table = TableServiceClient.from_connection_string(settings.storage_connection_string).get_table_client(
        settings.storage_name(TABLE))
    rows = list(table.query_entities("PartitionKey eq 't1' and RowKey ge 'contact_' and RowKey lt 'contact`'"))
    assert len(rows) >= 14
    assert {row["Id"] for row in rows} == set(per_contact)
    for row in rows:  # one feed entry for the create plus one per edit the record shows
        assert per_contact[row["Id"]] == int(row["JobTitle"].split("-")[1]) + 1, row["Id"]
    assert not list(table.query_entities(f"PartitionKey eq 't1' and RowKey gt '{FEED_PREFIX}{counter:020d}' "
                                         f"and RowKey lt 'feed`'"))


class SimulatedCrash(BaseException):
    """Raised from the transport hook: the process 'dies' right after a storage response arrived.
    A BaseException, so no `except Exception` on the way up can handle it."""


def scenario(crm: TableCrm, tenant: str) -> None:
    """Every kind of CRM write, in the order an operator might make them."""
    account = crm.create_account(tenant, "Analytical Engines", "u1")
    ada = crm.create_contact(CrmContact(id="ada", tenant_id=tenant, account_id=account.id, job_title="edit-0",
                                        emails=("ada@example.com",)))
    crm.update_contact(ada.model_copy(update={"job_title": "edit-1", "emails": ("ada@engines.example",)}))
    bob = crm.create_contact(CrmContact(id="bob", tenant_id=tenant, account_id=account.id, job_title="edit-0",
                                        emails=("bob@example.com", "b@example.com")))
    crm.delete_contact(tenant, "ada")
    crm.update_contact(bob.model_copy(update={"job_title": "edit-1", "emails": ("bob@example.com",)}))


def crashing_crm(settings: AppSettings, crash_after: int | None) -> tuple[TableCrm, list[int]]:
    responses = [0]

    def hook(response: object) -> None:
        responses[0] += 1
        if crash_after is not None and responses[0] == crash_after:
            raise SimulatedCrash()

    service = TableServiceClient.from_connection_string(settings.storage_connection_string,
                                                        raw_response_hook=hook)
    return TableCrm(service, settings.storage_name), responses


def assert_consistent(settings: AppSettings, tenant: str) -> None:
    crm = TableCrm.from_settings(settings)
    entries = crm.read_changes(tenant, 0, limit=1000).entries
    positions, counter = feed_and_counter(crm, tenant)
    assert positions == list(range(1, counter + 1))
    last_entry = {e.record_id: e for e in entries}
    table = TableServiceClient.from_connection_string(settings.storage_connection_string).get_table_client(
        settings.storage_name(TABLE))

    def rows(prefix: str) -> list[dict[str, object]]:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return list(table.query_entities("PartitionKey eq @t and RowKey ge @lo and RowKey lt @hi",
                                         parameters={"t": tenant, "lo": prefix, "hi": upper}))

    accounts = rows("acct_")
    assert {a["Id"] for a in accounts} == {r for r, e in last_entry.items() if e.kind == "account"}
    assert sorted(r["AccountId"] for r in rows("acctname_")) == sorted(a["Id"] for a in accounts)
    contacts = {str(c["Id"]): c for c in rows("contact_")}
    assert set(contacts) == {r for r, e in last_entry.items() if e.kind == "contact" and not e.deleted}
    for contact_id, row in contacts.items():
        # Each surviving record has exactly as many feed entries as writes it shows (creates + edits).
        writes = [e for e in entries if e.record_id == contact_id]
        assert len(writes) == int(str(row["JobTitle"]).split("-")[1]) + 1
    expected_index = sorted((str(c["Id"]), email) for c in contacts.values()
                            for email in json.loads(str(c["Emails"])))
    assert sorted((str(r["ContactId"]), unescape_key_part(str(r["RowKey"]).split("_")[2]))
                  for r in rows("email_")) == expected_index


def test_a_crash_after_any_storage_response_leaves_records_feed_and_indexes_consistent(
    app_env: dict[str, str]
) -> None:
    settings = load_settings(app_env)
    TableCrm.from_settings(settings).read_changes("warm-up", 0)  # the table exists before counting
    dry_run, responses = crashing_crm(settings, None)
    scenario(dry_run, "dry")
    assert_consistent(settings, "dry")
    for crash_after in range(1, responses[0] + 1):
        tenant = f"crash{crash_after}"
        crm, _ = crashing_crm(settings, crash_after)
        with pytest.raises(SimulatedCrash):
            scenario(crm, tenant)
        assert_consistent(settings, tenant)
