"""Malformed answers from Microsoft Graph (not JSON, cut short, wrong shapes, garbage items, broken paging,
broken $batch answers, HTML error pages, huge bodies) never crash a run or leave a half-written record: the run
ends with its error recorded, and once Graph answers properly again both sides converge with no duplicate."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.kinds.contacts.mapping import CRM_ID_PROPERTY
from sync_core.domain.models import FOLDER_NAME, CrmContact, LinkState, RunOutcome
from tests.badinput.conftest import Rig, make_bad_input_rig
from tests.badinput.corrupting_proxy import MUTATIONS, CorruptingProxy, Rule
from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401


@pytest.fixture(scope="module")
def proxy(emulator: EmulatorProcess) -> Iterator[CorruptingProxy]:  # noqa: F811
    server = CorruptingProxy(emulator.graph).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxied(azurite: Azurite, emulator: EmulatorProcess, emulator_control: ControlClient,  # noqa: F811
            proxy: CorruptingProxy) -> Iterator[Rig]:
    yield from make_bad_input_rig(azurite, emulator, emulator_control, "bm" + uuid.uuid4().hex[:6],
                                  graph_url=proxy.base)


def _folder_items(rig: Rig) -> list[dict[str, object]]:
    folder = rig.outlook.folder_id(FOLDER_NAME)
    assert folder is not None
    prop = CRM_ID_PROPERTY.replace("'", "''")
    answer = rig.outlook.request("GET", f"/contactFolders/{folder}/contacts?$top=999"
                                        f"&$expand=singleValueExtendedProperties($filter=id eq '{prop}')")
    assert answer.status_code == 200
    return list(answer.json()["value"])


def _assert_whole(rig: Rig) -> None:
    """Every CRM contact is in the folder exactly once and every folder item linked to one CRM contact, except
    records quarantined with a reason (an answer that made an item unreadable quarantines it until it changes)."""
    tenant, user = rig.settings.tenant_id, rig.settings.user_id
    quarantined = {(q.side, q.record_id) for q in rig.base.state.list_quarantine(tenant, user) if q.reason}
    contacts = {c.id for c in rig.base.crm.list_contacts(tenant, limit=10_000)}
    items = _folder_items(rig)
    by_item = rig.base.state.get_links_by_ms(tenant, user, [str(i["id"]) for i in items])
    for item in items:
        ms_id = str(item["id"])
        link = by_item.get(ms_id)
        tags = [p["value"] for p in item.get("singleValueExtendedProperties") or []]  # type: ignore[union-attr]
        if link is None or link.state is not LinkState.LINKED:
            assert ("microsoft", ms_id) in quarantined, f"Outlook item {ms_id} neither linked nor quarantined"
            assert not tags or ("crm", tags[0]) in quarantined or tags[0] not in contacts
            continue
        assert not tags or tags == [link.crm_id], (tags, link)
    linked = [link.crm_id for link in by_item.values() if link.state is LinkState.LINKED]
    assert len(linked) == len(set(linked)), "a CRM contact in the folder twice"
    for crm_id in contacts - set(linked):
        assert ("crm", crm_id) in quarantined or any(("microsoft", str(i["id"])) in quarantined for i in items), \
            f"CRM contact {crm_id} neither in the folder nor quarantined"


PROFILE = settings(max_examples=16, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _work(rig: Rig) -> None:
    """Something for every request of a run: creates in Outlook, an Outlook contact to import."""
    for index in range(2):
        rig.base.crm.create_contact(CrmContact(id="", tenant_id=rig.settings.tenant_id, account_id=rig.account_id,
                                               first_name=f"Bad{index}", last_name=uuid.uuid4().hex[:8]))
    folder = rig.outlook.folder_id(FOLDER_NAME)
    assert rig.outlook.request("POST", f"/contactFolders/{folder}/contacts",
                               {"givenName": "From", "surname": f"Outlook {uuid.uuid4().hex[:6]}"}).status_code == 201


def _converge(rig: Rig) -> None:
    for _ in range(4):
        again = rig.sync()
        writes = again.microsoft.created + again.microsoft.updated + again.crm.created + again.crm.updated
        if again.outcome is RunOutcome.SUCCEEDED and writes == 0:
            break
    else:
        raise AssertionError(f"no quiet run after the answers were fixed: {again}")
    _assert_whole(rig)


def _run_with(rig: Rig, proxy: CorruptingProxy, rule: Rule) -> None:
    proxy.set(rule)
    try:
        run = rig.sync()  # returns a record, whatever Graph answered: any exception fails the test
        hits = proxy.hits
    finally:
        proxy.set(None)
    assert hits >= 1, f"no request matched {rule}"
    if run.outcome is RunOutcome.FAILED:
        assert run.error, "a failed run must say why"


@PROFILE
@given(target=st.sampled_from(["delta", "batch"]), mutation=st.sampled_from(MUTATIONS), times=st.integers(1, 3))
def test_malformed_graph_answers_end_cleanly_and_converge(proxied: Rig, proxy: CorruptingProxy, target: str,
                                                          mutation: str, times: int) -> None:
    _work(proxied)
    _run_with(proxied, proxy, Rule(target, mutation, times))
    _converge(proxied)


@settings(max_examples=6, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutation=st.sampled_from(MUTATIONS))
def test_a_malformed_answer_while_looking_for_a_lost_create(proxied: Rig, proxy: CorruptingProxy,
                                                            mutation: str) -> None:
    _work(proxied)
    # The creates happen, their answer is lost: the next run looks them up by our tag, and that answer is bad.
    _run_with(proxied, proxy, Rule("batch", "html_502", 1))
    _run_with(proxied, proxy, Rule("find", mutation, 2))
    _converge(proxied)
