"""Bulk import writes every contact with its own feed entry, in few transactions."""
from __future__ import annotations

from sync_core.adapters.tables.crm import TableCrm
from sync_core.domain.models import CrmContact
from sync_core.settings import load_settings


def test_import_contacts_is_feed_exact_and_batched(app_env: dict[str, str]) -> None:
    settings = load_settings(app_env)
    crm = TableCrm.from_settings(settings)
    account = crm.create_account("t1", "Acme", "u1")
    before = crm.read_changes("t1", 0).last_position
    writes_before = crm.counter.writes
    made = crm.import_contacts([CrmContact(id="", tenant_id="t1", account_id=account.id, first_name=f"P{i}",
                                           emails=(f"p{i}@example.com",)) for i in range(120)])
    assert len({c.id for c in made}) == 120 and all(c.version for c in made)
    page = crm.read_changes("t1", before)
    assert [e.record_id for e in page.entries] == [c.id for c in made]
    assert [e.position for e in page.entries] == list(range(before + 1, before + 121))
    assert crm.counter.writes - writes_before <= 5  # 33 contacts per transaction, not 120 transactions
    assert crm.find_contacts_by_email("t1", account.id, "p77@example.com")[0].id == made[77].id
    stored = crm.get_contacts("t1", [made[5].id])[made[5].id]
    assert stored.version == made[5].version
