"""The shared Table plumbing: key escaping, and SDK failures arriving as sync_core errors."""
from __future__ import annotations

import string

import pytest
from azure.data.tables import TableServiceClient
from hypothesis import given
from hypothesis import strategies as st

from devhost.azurite import connection_string
from devhost.procs import free_port
from sync_core.adapters.tables.crm import TableCrm
from sync_core.adapters.tables.state import TableStateStore
from sync_core.adapters.tables.common import key_part, prefix_upper_bound, unescape_key_part
from sync_core.domain.errors import StorageError
from sync_core.domain.models import Link

FORBIDDEN_IN_KEYS = set("/\\#?") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}


@given(st.text())
def test_key_part_round_trips_and_is_safe_next_to_separators(value: str) -> None:
    escaped = key_part(value)
    assert unescape_key_part(escaped) == value
    assert not (set(escaped) & FORBIDDEN_IN_KEYS) and "_" not in escaped


@given(st.text(min_size=1), st.text())
def test_prefix_upper_bound_covers_exactly_the_prefix(prefix: str, rest: str) -> None:
    prefix = key_part(prefix) + "_"
    assert prefix <= prefix + key_part(rest) < prefix_upper_bound(prefix)


def test_key_part_keeps_plain_ids_readable() -> None:
    assert key_part("3f2a" + string.ascii_letters + "@.-+") == "3f2a" + string.ascii_letters + "@.-+"


def test_unreachable_storage_raises_storage_error() -> None:
    # Nothing listens on the port: the connection is refused, and no SDK exception leaks out.
    port = free_port()
    service = TableServiceClient.from_connection_string(connection_string(port, port, port), retry_total=0)
    with pytest.raises(StorageError, match="unreachable"):
        TableCrm(service).read_changes("t1", 0)
    with pytest.raises(StorageError, match="unreachable"):
        TableStateStore(service).save_link(Link(tenant_id="t1", user_id="u1", crm_id="c1"))
