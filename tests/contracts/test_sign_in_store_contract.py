"""SignInStore contract: a sign-in in progress is created once per state, answered If-Match, and taken
If-Match, in the memory store and the Table Storage store (on Azurite)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from sync_core.adapters.memory.app_stores import MemorySignIns
from sync_core.adapters.tables.common import connect
from sync_core.adapters.tables.sign_ins import TableSignIns
from sync_core.adapters.tokens import TokenCipher
from sync_core.domain.errors import AlreadyExistsError, ConcurrencyError
from sync_core.domain.sign_ins import PendingSignIn
from sync_core.ports import SignInStore
from sync_core.settings import load_settings

STATE = "st/ate#1~" + "x" * 40


@pytest.fixture(params=["memory", "tables"])
def sign_ins(request: pytest.FixtureRequest) -> SignInStore:
    if request.param == "memory":
        return MemorySignIns()
    settings = load_settings(request.getfixturevalue("app_env"))
    return TableSignIns(connect(settings.storage_connection_string), settings.storage_name,
                        TokenCipher(settings.token_key_bytes))


def _pending(state: str = STATE) -> PendingSignIn:
    return PendingSignIn(state=state, tenant_id="t/1", user_id="u#1", session_id="s1", expires=1_800_000_000,
                         flow='{"code_verifier": "v", "nonce": "n"}')


def test_a_sign_in_is_created_once_and_reads_back(sign_ins: SignInStore) -> None:
    assert sign_ins.get(STATE) is None
    created = sign_ins.create(_pending())
    assert created.etag and created.response == ""
    assert sign_ins.get(STATE) == created
    with pytest.raises(AlreadyExistsError):
        sign_ins.create(_pending())
    assert sign_ins.get("other-state") is None


def test_the_answer_is_stored_if_unchanged_and_the_sign_in_taken_if_unchanged(sign_ins: SignInStore) -> None:
    created = sign_ins.create(_pending())
    answered = sign_ins.save(replace(created, response='{"code": "c1"}'))
    assert answered.etag != created.etag
    assert sign_ins.get(STATE) == answered
    with pytest.raises(ConcurrencyError):
        sign_ins.save(replace(created, response='{"code": "replayed"}'))  # a second answer to the same read
    with pytest.raises(ConcurrencyError):
        sign_ins.take(created)
    sign_ins.take(answered)
    assert sign_ins.get(STATE) is None
    sign_ins.take(answered)  # already gone: Table Storage answers a delete of a missing row with success
