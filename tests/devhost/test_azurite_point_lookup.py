"""Azurite with the point-lookup preload: the same answers as Table Storage, at Table Storage's cost.

The preload only reorders a (PartitionKey, RowKey) lookup; this pins that the answers did not change where it
matters: one RowKey living in several partitions. (Its effect on cost is measured by `bench`: seeding 50,000
contacts into one partition.)
"""
from __future__ import annotations

import uuid

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableServiceClient, UpdateMode

from devhost.azurite import Azurite


@pytest.fixture()
def table(azurite: Azurite):  # type: ignore[no-untyped-def]
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    name = "lookup" + uuid.uuid4().hex[:10]
    client = service.create_table(name)
    try:
        yield client
    finally:
        service.delete_table(name)


def test_one_row_key_in_several_partitions_is_kept_apart(table) -> None:  # type: ignore[no-untyped-def]
    for partition in ("a", "b", "c"):
        table.create_entity({"PartitionKey": partition, "RowKey": "same", "Who": partition})
    with pytest.raises(ResourceExistsError):
        table.create_entity({"PartitionKey": "b", "RowKey": "same", "Who": "again"})
    table.create_entity({"PartitionKey": "d", "RowKey": "same", "Who": "d"})  # a new partition is no conflict

    assert [table.get_entity(p, "same")["Who"] for p in "abcd"] == list("abcd")
    with pytest.raises(ResourceNotFoundError):
        table.get_entity("e", "same")

    stale = table.get_entity("b", "same")
    table.update_entity({"PartitionKey": "b", "RowKey": "same", "Who": "B"}, mode=UpdateMode.MERGE)
    with pytest.raises(ResourceModifiedError):
        table.update_entity({"PartitionKey": "b", "RowKey": "same", "Who": "late"}, mode=UpdateMode.REPLACE,
                            etag=stale.metadata["etag"], match_condition=MatchConditions.IfNotModified)
    table.delete_entity("c", "same")
    assert {e["PartitionKey"]: e["Who"] for e in table.list_entities()} == {"a": "a", "b": "B", "d": "d"}



def test_a_query_within_one_partition_answers_as_over_the_whole_table(table) -> None:  # type: ignore[no-untyped-def]
    odd = "it''s or (not) one"  # a key with a quote, the word "or" and brackets: OData-quoted below
    for partition in ("a", "b", "it's or (not) one"):
        for row in ("r1", "r2", "r3"):
            table.create_entity({"PartitionKey": partition, "RowKey": row, "V": f"{partition}/{row}"})

    def rows(filter_: str, **kwargs) -> list[str]:  # type: ignore[no-untyped-def]
        return [e["V"] for e in table.query_entities(filter_, **kwargs)]

    assert rows("PartitionKey eq 'b'") == ["b/r1", "b/r2", "b/r3"]
    assert rows("PartitionKey eq 'b' and ( RowKey eq 'r1' or RowKey eq 'r3' )") == ["b/r1", "b/r3"]
    assert rows("PartitionKey eq 'b' and RowKey ge 'r2'") == ["b/r2", "b/r3"]
    # A top-level `or` reaches beyond the partition: the whole table answers.
    assert rows("PartitionKey eq 'b' and RowKey eq 'r1' or PartitionKey eq 'a'") == ["a/r1", "a/r2", "a/r3", "b/r1"]
    assert rows(f"PartitionKey eq '{odd}' and RowKey lt 'r3'") == ["it's or (not) one/r1", "it's or (not) one/r2"]
    assert rows("PartitionKey eq 'c'") == []
    assert rows("PartitionKey ge 'b'") == ["b/r1", "b/r2", "b/r3", "it's or (not) one/r1", "it's or (not) one/r2",
                                           "it's or (not) one/r3"]
    # Paged with continuation tokens inside the partition.
    assert rows("PartitionKey eq 'a'", results_per_page=2) == ["a/r1", "a/r2", "a/r3"]
