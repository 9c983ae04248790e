"""Table Storage contents as JSON (typed values kept), to load a storage account written by another
version of the app into a test's Azurite."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from azure.data.tables import EdmType, EntityProperty, TableServiceClient


def _encode(value: Any) -> Any:
    if isinstance(value, EntityProperty):
        return {"$edm": str(value.edm_type.value if hasattr(value.edm_type, "value") else value.edm_type),
                "value": str(value.value)}
    if isinstance(value, datetime):
        return {"$edm": "Edm.DateTime", "value": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "$edm" in value:
        if value["$edm"] == "Edm.Int64":
            return EntityProperty(int(value["value"]), EdmType.INT64)
        if value["$edm"] == "Edm.DateTime":
            return datetime.fromisoformat(value["value"])
        raise ValueError(f"unexpected EDM type {value['$edm']}")
    return value


def dump(service: TableServiceClient, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every table whose name starts with `prefix`, keyed by the name without it."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in service.list_tables():
        if not table.name.startswith(prefix):
            continue
        rows = service.get_table_client(table.name).list_entities()
        tables[table.name[len(prefix):]] = [{k: _encode(v) for k, v in row.items()} for row in rows]
    return tables


def load(service: TableServiceClient, prefix: str, tables: dict[str, list[dict[str, Any]]]) -> int:
    count = 0
    for name, rows in tables.items():
        client = service.create_table_if_not_exists(prefix + name)
        for row in rows:
            client.create_entity({k: _decode(v) for k, v in row.items()})
            count += 1
    return count


def read(path: Path) -> dict[str, list[dict[str, Any]]]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]
