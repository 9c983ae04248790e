"""The check both test directories end with: no secret of the session appears in any captured log line."""
from __future__ import annotations

import re

from sync_core.adapters.tables.common import unescape_key_part
from sync_core.adapters.tables.subscriptions import INDEX_PARTITION
from tests.functions.stack import Stack

# Shapes of credentials that must never be logged, whatever their value.
_SHAPES = [
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{16,}"),
    re.compile(r"(?i)\b(refresh_token|access_token|client_secret|id_token)\b[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9._~+/-]{8,}"),
]


def _current_secrets(stack: Stack) -> set[str]:
    """Every token our app holds right now, and every subscription's clientState."""
    for entity in stack.services.tokens.table.query("PartitionKey ne @x", {"x": ""}):
        stack.remember_tokens(unescape_key_part(str(entity["PartitionKey"])), unescape_key_part(str(entity["RowKey"])))
    store = stack.services.subscriptions
    states = set()
    for entity in store.table.query("PartitionKey eq @p", {"p": INDEX_PARTITION}):
        owner = store.owner_of(unescape_key_part(str(entity["RowKey"])))
        if owner is not None:
            states.add(owner.client_state)
    return states


def leaked_secrets(stack: Stack) -> list[str]:
    """Lines of the devhost, the emulator and this process that show a secret of the session."""
    known = {value for value in stack.secrets_to_hide | _current_secrets(stack) if len(value) >= 8}
    sources = {"devhost": stack.devhost_lines(), "emulator": stack.emulator_lines(),
               "tests": list(stack.log_collector.lines)}
    found: list[str] = []
    for source, lines in sources.items():
        for number, line in enumerate(lines, 1):
            if any(secret in line for secret in known) or any(shape.search(line) for shape in _SHAPES):
                found.append(f"{source}:{number}: {line[:200]}")
    return found
