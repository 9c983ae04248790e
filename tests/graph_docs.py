"""Where Microsoft's published example payloads are: `shared/` beside the checkout (as CI lays it out)."""
from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
GRAPH_DOCS = _ROOT.parent / "shared" / "fixtures" / "graph-docs"
if not GRAPH_DOCS.is_dir():
    raise RuntimeError(f"Microsoft's example payloads are missing: expected them in {GRAPH_DOCS}")
