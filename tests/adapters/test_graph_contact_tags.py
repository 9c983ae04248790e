"""GraphContacts.crm_ids_of on the emulator: our tag, the user's own untagged card, and a card gone since the
delta was read (404) told apart — the import takes the second for a new contact and must never take the third."""
from __future__ import annotations

import secrets

from bench.chaos_people import GraphPerson
from bench.harness import make_rig
from devhost.azurite import Azurite
from m365_emulator.server import ControlClient, EmulatorProcess
from sync_core.adapters.graph.contacts import GraphContacts
from sync_core.domain.models import FOLDER_NAME
from sync_core.ports import ITEM_GONE
from tests.fixtures_emulator import emulator, emulator_control  # noqa: F401


def test_tags_of_a_card_of_ours_a_card_of_the_users_and_a_deleted_card(
        azurite: Azurite, emulator: EmulatorProcess, emulator_control: ControlClient) -> None:  # noqa: F811
    rig = make_rig(azurite.connection_string, "tg" + secrets.token_hex(3), emulator.graph, emulator_control)
    contact = rig.contact(rig.account("Contoso Ltd"), "Ada", "Lovelace", "ada@example.com")
    rig.sync()
    person = GraphPerson(emulator.graph, emulator_control, rig.mailbox)
    session = rig.session()
    try:
        folder = person.folder_id(FOLDER_NAME)
        assert folder is not None
        [ours] = [item["id"] for item in person.folder_contacts(folder)]
        made = [person.request("POST", f"/contactFolders/{folder}/contacts", {"givenName": name, "surname": "Own"})
                for name in ("Kept", "Deleted")]
        assert [answer.status_code for answer in made] == [201, 201]
        own, deleted = (str(answer.json()["id"]) for answer in made)
        assert person.request("DELETE", f"/contacts/{deleted}").status_code == 204
        tags = GraphContacts(session).crm_ids_of([ours, own, deleted])
        assert tags == {ours: contact.id, own: None, deleted: ITEM_GONE}
    finally:
        session.close()
        person.close()
